// Package importfile reads the tabular exports hospitals hand us (CSV, or
// the first sheet of an XLSX workbook) as rows of strings, with nothing
// beyond the standard library.
package importfile

import (
	"archive/zip"
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Read returns every row of the file at p: CSV (UTF-8, with or without BOM,
// or GB18030 is not supported: save as UTF-8) or XLSX by extension.
func Read(p string) ([][]string, error) {
	switch strings.ToLower(path.Ext(p)) {
	case ".xlsx":
		return readXLSX(p)
	case ".csv", ".txt":
		f, err := os.Open(p)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		return ReadCSV(f)
	}
	return nil, fmt.Errorf("%s: only .csv and .xlsx files can be imported", p)
}

// ReadCSV reads CSV, dropping a UTF-8 byte-order mark.
func ReadCSV(r io.Reader) ([][]string, error) {
	br := bufio.NewReader(r)
	if b, err := br.Peek(3); err == nil && bytes.Equal(b, []byte{0xEF, 0xBB, 0xBF}) {
		_, _ = br.Discard(3)
	}
	cr := csv.NewReader(br)
	cr.FieldsPerRecord = -1
	cr.TrimLeadingSpace = true
	rows, err := cr.ReadAll()
	if err != nil {
		return nil, fmt.Errorf("read csv: %w", err)
	}
	for _, row := range rows {
		for _, cell := range row {
			if !utf8.ValidString(cell) {
				return nil, errors.New("read csv: the file is not UTF-8 (save it from Excel as \"CSV UTF-8\")")
			}
		}
	}
	return rows, nil
}

type xlsxCell struct {
	Ref    string `xml:"r,attr"`
	Type   string `xml:"t,attr"`
	Value  string `xml:"v"`
	Inline struct {
		Text string `xml:"t"`
	} `xml:"is"`
}

type xlsxSheet struct {
	Rows []struct {
		Cells []xlsxCell `xml:"c"`
	} `xml:"sheetData>row"`
}

type xlsxStrings struct {
	Items []struct {
		Text string `xml:"t"`
		Runs []struct {
			Text string `xml:"t"`
		} `xml:"r"`
	} `xml:"si"`
}

func readXLSX(p string) ([][]string, error) {
	zr, err := zip.OpenReader(p)
	if err != nil {
		return nil, fmt.Errorf("open xlsx: %w", err)
	}
	defer zr.Close()
	files := map[string]*zip.File{}
	for _, f := range zr.File {
		files[f.Name] = f
	}
	decode := func(name string, v any) error {
		f, ok := files[name]
		if !ok {
			return fmt.Errorf("xlsx has no %s", name)
		}
		rc, err := f.Open()
		if err != nil {
			return err
		}
		defer rc.Close()
		return xml.NewDecoder(rc).Decode(v)
	}
	var shared []string
	if _, ok := files["xl/sharedStrings.xml"]; ok {
		var ss xlsxStrings
		if err := decode("xl/sharedStrings.xml", &ss); err != nil {
			return nil, fmt.Errorf("read xlsx strings: %w", err)
		}
		for _, it := range ss.Items {
			s := it.Text
			for _, r := range it.Runs {
				s += r.Text
			}
			shared = append(shared, s)
		}
	}
	var sh xlsxSheet
	if err := decode("xl/worksheets/sheet1.xml", &sh); err != nil {
		return nil, fmt.Errorf("read xlsx sheet: %w", err)
	}
	out := make([][]string, 0, len(sh.Rows))
	for _, r := range sh.Rows {
		var row []string
		for i, c := range r.Cells {
			col := i
			if c.Ref != "" {
				col = columnIndex(c.Ref)
			}
			for len(row) <= col {
				row = append(row, "")
			}
			switch c.Type {
			case "s":
				n, err := strconv.Atoi(c.Value)
				if err != nil || n < 0 || n >= len(shared) {
					return nil, fmt.Errorf("xlsx cell %s: bad shared string", c.Ref)
				}
				row[col] = shared[n]
			case "inlineStr":
				row[col] = c.Inline.Text
			default:
				row[col] = c.Value
			}
		}
		out = append(out, row)
	}
	return out, nil
}

// columnIndex turns "C7" into 2.
func columnIndex(ref string) int {
	n := 0
	for _, r := range ref {
		if r < 'A' || r > 'Z' {
			break
		}
		n = n*26 + int(r-'A'+1)
	}
	return n - 1
}

// WriteXLSX writes rows as a minimal one-sheet workbook with inline strings
// (for tests and for exports staff open in Excel).
func WriteXLSX(w io.Writer, rows [][]string) error {
	zw := zip.NewWriter(w)
	put := func(name, body string) error {
		f, err := zw.Create(name)
		if err != nil {
			return err
		}
		_, err = io.WriteString(f, body)
		return err
	}
	var sheet strings.Builder
	sheet.WriteString(`<?xml version="1.0" encoding="UTF-8" standalone="yes"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>`)
	for i, row := range rows {
		fmt.Fprintf(&sheet, `<row r="%d">`, i+1)
		for j, cell := range row {
			var esc bytes.Buffer
			_ = xml.EscapeText(&esc, []byte(cell))
			fmt.Fprintf(&sheet, `<c r="%s%d" t="inlineStr"><is><t>%s</t></is></c>`, columnName(j), i+1, esc.String())
		}
		sheet.WriteString(`</row>`)
	}
	sheet.WriteString(`</sheetData></worksheet>`)
	parts := []struct{ name, body string }{
		{"[Content_Types].xml", `<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/></Types>`},
		{"_rels/.rels", `<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>`},
		{"xl/workbook.xml", `<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets><sheet name="Sheet1" sheetId="1" r:id="rId1"/></sheets></workbook>`},
		{"xl/_rels/workbook.xml.rels", `<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/></Relationships>`},
		{"xl/worksheets/sheet1.xml", sheet.String()},
	}
	for _, p := range parts {
		if err := put(p.name, p.body); err != nil {
			return err
		}
	}
	return zw.Close()
}

func columnName(i int) string {
	s := ""
	for i++; i > 0; i = (i - 1) / 26 {
		s = string(rune('A'+(i-1)%26)) + s
	}
	return s
}
