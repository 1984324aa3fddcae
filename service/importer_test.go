package service_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"careloop/model"
	"careloop/service"
	"careloop/tabular"
	"careloop/testenv"
)

func sealer(t testing.TB) *service.Sealer {
	s, err := service.NewSealer(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var importFixture = [][]string{
	{"姓名", "手机号", "性别", "出生日期", "HIS号", "来源渠道"},
	{"张三", "13800000001", "男", "1980-01-02", "H001", "体检中心"},
	{"李四", "bad", "女", "1990-02-03", "H002", ""},
	{"", "13800000003", "男", "", "H003", ""},
	{"王五", "13800000004", "女", "2999-01-01", "H004", ""},
	{"赵六", "13800000001", "男", "", "H005", ""},
	{"钱七", "", "female", "29221", "H006", "社区义诊"}, // an Excel date serial: 1980-01-01
	{"孙八", "13800000008", "", "1975/5/6", "", ""},
	{"", "", "", "", "", ""},
}

func TestImportPatients(t *testing.T) {
	testenv.ForEachDB(t, func(t *testing.T, db *model.DB) {
		ctx := context.Background()
		im := service.NewImporter(db, sealer(t), nil)
		im.BatchSize = 3 // several batches even in a small file
		rep, err := im.Import(ctx, importFixture, nil)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Rows != 7 || rep.Created != 3 || rep.Updated != 0 || len(rep.Errors) != 4 {
			t.Fatalf("first import: %+v", rep)
		}
		want := map[int]string{3: "phone", 4: "name", 5: "birth_date", 6: "phone"}
		for _, e := range rep.Errors {
			if want[e.Row] != e.Field || e.Reason == "" {
				t.Errorf("row %d: %s %s", e.Row, e.Field, e.Reason)
			}
		}
		var qian model.Patient
		db.Gorm().Where("his_id = ?", "H006").Take(&qian)
		if qian.BirthDate == nil || qian.BirthDate.In(model.Shanghai).Format("2006-01-02") != "1980-01-01" || qian.Gender != "female" || qian.Source != "社区义诊" {
			t.Fatalf("excel date / gender / source: %+v", qian)
		}
		// Importing the same file again changes nothing.
		var before []model.Patient
		db.Gorm().Order("id").Find(&before)
		rep, err = im.Import(ctx, importFixture, nil)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Created != 0 || rep.Updated != 0 || rep.Unchanged != 3 {
			t.Fatalf("re-import: %+v", rep)
		}
		var after []model.Patient
		db.Gorm().Order("id").Find(&after)
		if len(after) != len(before) {
			t.Fatalf("re-import changed the row count: %d -> %d", len(before), len(after))
		}
		for i := range after {
			if !after[i].UpdatedAt.Equal(before[i].UpdatedAt) {
				t.Fatalf("re-import touched patient %d", after[i].ID)
			}
		}
		// A corrected export updates by HIS id and fills a missing phone.
		if rep, err = im.Import(ctx, [][]string{{"姓名", "HIS号", "手机号"}, {"张三丰", "H001", ""}, {"钱七", "H006", "13900000006"}}, nil); err != nil {
			t.Fatal(err)
		}
		if rep.Updated != 2 || len(rep.Errors) != 0 {
			t.Fatalf("corrections: %+v", rep)
		}
		var zhang model.Patient
		db.Gorm().Where("his_id = ?", "H001").Take(&zhang)
		if zhang.Name != "张三丰" || zhang.PhoneHash == nil {
			t.Fatalf("correction: %+v", zhang)
		}
		// A phone that belongs to another HIS id is refused, not merged.
		if rep, err = im.Import(ctx, [][]string{{"姓名", "HIS号", "手机号"}, {"冒名", "H999", "13800000001"}}, nil); err != nil {
			t.Fatal(err)
		}
		if len(rep.Errors) != 1 || rep.Created != 0 {
			t.Fatalf("phone of another HIS id: %+v", rep)
		}
		// Headers that cannot work are reported as such.
		if rep, err = im.Import(ctx, [][]string{{"备注"}, {"x"}}, nil); err != nil {
			t.Fatal(err)
		}
		if len(rep.Errors) != 1 || rep.Errors[0].Row != 1 {
			t.Fatalf("bad header: %+v", rep)
		}
	})
}

// An Excel export is imported as it streams (tabular.Open), the same as
// the rows in memory.
func TestImportFromXLSX(t *testing.T) {
	path := filepath.Join(t.TempDir(), "his.xlsx")
	var buf bytes.Buffer
	if err := tabular.WriteXLSX(&buf, "患者", tabular.Strings(importFixture)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	rows, err := tabular.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	db := testenv.OpenDB(t, "sqlite")
	rep, err := service.NewImporter(db, sealer(t), nil).ImportFrom(context.Background(), rows, nil)
	if err != nil {
		t.Fatal(err)
	}
	want, err := service.NewImporter(testenv.OpenDB(t, "sqlite"), sealer(t), nil).Import(context.Background(), importFixture, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Rows != want.Rows || rep.Created != want.Created || len(rep.Errors) != len(want.Errors) || rep.Created == 0 {
		t.Fatalf("from xlsx %+v, from memory %+v", rep, want)
	}
}

// BenchmarkImport100k imports 100,000 new patients into a fresh database,
// then the same file again (which must change nothing).
//
//	go test -run '^$' -bench Import100k -benchtime 1x ./service
func BenchmarkImport100k(b *testing.B) {
	for _, backend := range testenv.Backends() {
		b.Run(backend, func(b *testing.B) {
			rows := [][]string{{"姓名", "手机号", "性别", "出生日期", "HIS号", "来源渠道"}}
			for i := 0; i < 100000; i++ {
				rows = append(rows, []string{fmt.Sprintf("患者%d", i), fmt.Sprintf("139%08d", i), "女", "1970-01-01", fmt.Sprintf("H%07d", i), "HIS"})
			}
			for n := 0; n < b.N; n++ {
				db := testenv.OpenDB(b, backend)
				im := service.NewImporter(db, sealer(b), nil)
				start := time.Now()
				rep, err := im.Import(context.Background(), rows, nil)
				if err != nil || rep.Created != 100000 {
					b.Fatalf("%+v %v", rep, err)
				}
				first := time.Since(start)
				start = time.Now()
				rep, err = im.Import(context.Background(), rows, nil)
				if err != nil || rep.Unchanged != 100000 {
					b.Fatalf("re-import: %+v %v", rep, err)
				}
				b.ReportMetric(first.Seconds(), "s/first-import")
				b.ReportMetric(time.Since(start).Seconds(), "s/re-import")
			}
		})
	}
}

// The HIS import takes a 身份证号 column, matches on it first, and lets the
// card decide birth date and gender.
func TestImportMatchesIDCardFirst(t *testing.T) {
	testenv.ForEachDB(t, func(t *testing.T, db *model.DB) {
		ctx := context.Background()
		im := service.NewImporter(db, sealer(t), nil)
		first := [][]string{
			{"姓名", "身份证号", "手机号", "HIS号"},
			{"周九", "11010519491231002X", "13800000091", "H091"},
			{"吴十", "110105194912310021", "", "H092"}, // bad check digit
			{"郑一", "11010519491231002X", "", "H093"}, // same card as row 2
			{"王二", "440305199001010018", "", "H094"}, // a man born 1990-01-01
		}
		rep, err := im.Import(ctx, first, nil)
		if err != nil {
			t.Fatal(err)
		}
		bad := map[int]string{}
		for _, e := range rep.Errors {
			bad[e.Row] = e.Field
		}
		if rep.Created != 2 || bad[3] != "id_card" || bad[4] != "id_card" {
			t.Fatalf("first import: %+v", rep)
		}
		var zhou model.Patient
		db.Gorm().Where("his_id = ?", "H091").Take(&zhou)
		if zhou.Gender != "female" || zhou.BirthDate == nil || model.DateString(*zhou.BirthDate) != "1949-12-31" ||
			zhou.RegionCode != "110105" || zhou.IDCardMask != "1101**********002X" || bytes.Contains(zhou.IDCardEnc, []byte("1101051949")) {
			t.Fatalf("the card did not decide: %+v", zhou)
		}
		// A later export with a new HIS id and no phone still finds her by the card.
		rep, err = im.Import(ctx, [][]string{{"姓名", "身份证号", "HIS号"}, {"周九", "11010519491231002X", "H091-NEW"}}, nil)
		if err != nil || rep.Created != 0 || rep.Unchanged+rep.Updated != 1 {
			t.Fatalf("re-import by card: %+v %v", rep, err)
		}
		var n int64
		db.Gorm().Model(&model.Patient{}).Count(&n)
		if n != 2 {
			t.Fatalf("%d patients after matching by card, want 2", n)
		}
	})
}
