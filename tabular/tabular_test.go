package tabular_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/xuri/excelize/v2"

	"careloop/tabular"
)

// A workbook as Excel saves it: shared strings, a date cell with a date
// format, a phone typed as a number, rich text, an export split over two
// sheets under the same header, and a notes sheet that is not the table.
func TestReadWorkbook(t *testing.T) {
	f := excelize.NewFile()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(f.SetSheetName("Sheet1", "患者1"))
	header := []any{"姓名", "手机号", "出生日期", "HIS号"}
	must(f.SetSheetRow("患者1", "A1", &header))
	must(f.SetSheetRow("患者1", "A2", &[]any{"张三", 13800000001, nil, "H001"}))
	style, err := f.NewStyle(&excelize.Style{NumFmt: 14}) // m/d/yy, as Excel shows a typed date
	must(err)
	must(f.SetCellValue("患者1", "C2", 29221)) // 1980-01-01 as Excel stores it
	must(f.SetCellStyle("患者1", "C2", "C2", style))
	must(f.SetCellRichText("患者1", "A3", []excelize.RichTextRun{{Text: "李"}, {Text: "四"}}))
	must(f.SetCellValue("患者1", "D3", "H002"))
	_, err = f.NewSheet("患者2")
	must(err)
	must(f.SetSheetRow("患者2", "A1", &header))
	must(f.SetSheetRow("患者2", "A2", &[]any{"王五", "13800000003", "1975-05-06", "H003"}))
	_, err = f.NewSheet("说明")
	must(err)
	must(f.SetCellValue("说明", "A1", "本表由 HIS 导出"))
	// Excel writes each sheet's dimension (excelize does not).
	must(f.SetSheetDimension("患者1", "A1:D3"))
	must(f.SetSheetDimension("患者2", "A1:D2"))
	must(f.SetSheetDimension("说明", "A1:A1"))
	path := filepath.Join(t.TempDir(), "his.xlsx")
	must(f.SaveAs(path))

	rows, err := tabular.Open(path)
	must(err)
	defer rows.Close()
	if rows.Total() != 4 {
		t.Errorf("total %d, want 4 (the header and 2 + 1 rows; not the notes)", rows.Total())
	}
	got, err := tabular.ReadAll(rows)
	must(err)
	want := [][]string{
		{"姓名", "手机号", "出生日期", "HIS号"},
		{"张三", "13800000001", "29221", "H001"},
		{"李四", "", "", "H002"},
		{"王五", "13800000003", "1975-05-06", "H003"},
	}
	if len(got) != len(want) {
		t.Fatalf("rows %q", got)
	}
	for i := range want {
		if !slices.Equal(got[i], want[i]) {
			t.Errorf("row %d: %q, want %q", i+1, got[i], want[i])
		}
	}
}

// A 100,000-row workbook is read row by row; what it costs is measured by
// BenchmarkReadXLSX100k.
func TestWriteAndReadManyRows(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big.xlsx")
	writeRows(t, path, 20000)
	rows, err := tabular.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for {
		row, err := rows.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if n > 0 && row[0] != fmt.Sprintf("患者%d", n) {
			t.Fatalf("row %d: %q", n, row)
		}
		n++
	}
	if n != 20001 || rows.Total() != 20001 { // excelize writes no dimension: the rows are counted first
		t.Fatalf("%d rows read, total %d", n, rows.Total())
	}
}

func writeRows(t testing.TB, path string, n int) {
	i := -1
	var buf bytes.Buffer
	err := tabular.WriteXLSX(&buf, "患者", func() ([]any, bool) {
		i++
		switch {
		case i == 0:
			return []any{"姓名", "手机号", "HIS号"}, true
		case i > n:
			return nil, false
		}
		return []any{fmt.Sprintf("患者%d", i), fmt.Sprintf("139%08d", i), fmt.Sprintf("H%07d", i)}, true
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
}

// CSV: a byte-order mark is dropped, a file that is not UTF-8 is refused
// with what to do, and the line count bounds the rows.
func TestReadCSV(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "his.csv")
	if err := os.WriteFile(good, []byte("\xEF\xBB\xBF姓名,HIS号\n张三,H001\n李四,H002"), 0o600); err != nil {
		t.Fatal(err)
	}
	rows, err := tabular.Open(good)
	if err != nil {
		t.Fatal(err)
	}
	got, err := tabular.ReadAll(rows)
	rows.Close()
	if err != nil || len(got) != 3 || got[0][0] != "姓名" || got[2][1] != "H002" || rows.Total() != 3 {
		t.Fatalf("%q %v total %d", got, err, rows.Total())
	}
	gbk := filepath.Join(dir, "gbk.csv")
	if err := os.WriteFile(gbk, []byte("\xd0\xd5\xc3\xfb,HIS\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	rows, err = tabular.Open(gbk)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tabular.ReadAll(rows); err == nil {
		t.Fatal("a GBK file was read as UTF-8")
	}
	rows.Close()
	if _, err := tabular.Open(filepath.Join(dir, "x.pdf")); err == nil {
		t.Fatal("a pdf was accepted")
	}
}

// go test -run '^$' -bench ReadXLSX100k -benchmem ./tabular
func BenchmarkReadXLSX100k(b *testing.B) {
	path := filepath.Join(b.TempDir(), "big.xlsx")
	writeRows(b, path, 100000)
	b.ResetTimer()
	for range b.N {
		rows, err := tabular.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		for {
			if _, err := rows.Next(); err != nil {
				break
			}
		}
		rows.Close()
	}
}
