package model_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"careloop/model"
	"careloop/testenv"
)

// The versioned migrations build exactly the schema the models describe:
// every table, column (type, nullability, default) and index, on both
// databases. A model changed without its migration (or the reverse) fails.
func TestMigrationsMatchModels(t *testing.T) {
	for _, backend := range testenv.Backends() {
		t.Run(backend, func(t *testing.T) {
			migrated, modelled := open(t, backend), open(t, backend)
			ctx := context.Background()
			if err := migrated.Migrate(ctx); err != nil {
				t.Fatal(err)
			}
			if err := modelled.AutoMigrate(ctx); err != nil {
				t.Fatal(err)
			}
			got, want := describe(t, migrated), describe(t, modelled)
			if len(want) < 30 {
				t.Fatalf("only %d schema lines described", len(want))
			}
			for _, l := range want {
				if !slices.Contains(got, l) {
					t.Errorf("the models have, the migrations lack: %s", l)
				}
			}
			for _, l := range got {
				if !slices.Contains(want, l) {
					t.Errorf("the migrations have, the models lack: %s", l)
				}
			}
			// Applying them again changes nothing, and AutoMigrate on the
			// migrated schema finds nothing to add.
			if err := migrated.Migrate(ctx); err != nil {
				t.Fatal(err)
			}
			if err := migrated.AutoMigrate(ctx); err != nil {
				t.Fatal(err)
			}
			if again := describe(t, migrated); !slices.Equal(again, got) {
				t.Error("AutoMigrate changed the migrated schema")
			}
			st, err := migrated.MigrationStatus(ctx)
			if err != nil || len(st) == 0 || !st[len(st)-1].Applied {
				t.Fatalf("status: %+v %v", st, err)
			}
		})
	}
}

// An install made before versioned migrations (AutoMigrate'd, no version
// table) keeps its data and is brought under the migrations.
func TestMigrateAdoptsAnOlderInstall(t *testing.T) {
	for _, backend := range testenv.Backends() {
		t.Run(backend, func(t *testing.T) {
			db, ctx := open(t, backend), context.Background()
			if err := db.AutoMigrate(ctx); err != nil {
				t.Fatal(err)
			}
			if err := db.Gorm().Exec("DROP TABLE IF EXISTS goose_db_version").Error; err != nil {
				t.Fatal(err)
			}
			p := model.Patient{Name: "老用户", Gender: "female"}
			if err := db.Gorm().Create(&p).Error; err != nil {
				t.Fatal(err)
			}
			if err := db.Migrate(ctx); err != nil {
				t.Fatal(err)
			}
			var n int64
			if err := db.Gorm().Model(&model.Patient{}).Where("id = ? AND name = ?", p.ID, "老用户").Count(&n).Error; err != nil || n != 1 {
				t.Fatalf("the patient is gone after migrating: %d %v", n, err)
			}
			st, err := db.MigrationStatus(ctx)
			if err != nil || !st[0].Applied {
				t.Fatalf("version 1 not recorded: %+v %v", st, err)
			}
		})
	}
}

func open(t *testing.T, backend string) *model.DB {
	opts := model.OpenOptions{SQLitePath: filepath.Join(t.TempDir(), "schema.db")}
	if backend == "mysql" {
		opts = model.OpenOptions{MySQLDSN: testenv.NewMySQLDatabase(t), MaxOpenConns: 4}
	}
	db, err := model.Open(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// describe lists the schema, one sorted line per column and per index
// column, without the migrations' own version table.
func describe(t *testing.T, db *model.DB) []string {
	g := db.Gorm()
	var out []string
	if db.Dialect() == "mysql" {
		var cols []struct {
			TableName, ColumnName, ColumnType, IsNullable, Extra string
			ColumnDefault                                        *string
		}
		if err := g.Raw(`SELECT table_name, column_name, column_type, is_nullable, extra, column_default FROM information_schema.columns
			WHERE table_schema = DATABASE() AND table_name <> 'goose_db_version'`).Scan(&cols).Error; err != nil {
			t.Fatal(err)
		}
		for _, c := range cols {
			out = append(out, fmt.Sprintf("column %s.%s %s null=%s %s default=%v", c.TableName, c.ColumnName, c.ColumnType, c.IsNullable, c.Extra, deref(c.ColumnDefault)))
		}
		var idx []struct {
			TableName, IndexName, ColumnName string
			NonUnique, SeqInIndex            int
		}
		if err := g.Raw(`SELECT table_name, index_name, column_name, non_unique, seq_in_index FROM information_schema.statistics
			WHERE table_schema = DATABASE() AND table_name <> 'goose_db_version'`).Scan(&idx).Error; err != nil {
			t.Fatal(err)
		}
		for _, i := range idx {
			out = append(out, fmt.Sprintf("index %s.%s #%d %s unique=%v", i.TableName, i.IndexName, i.SeqInIndex, i.ColumnName, i.NonUnique == 0))
		}
	} else {
		var tables []string
		if err := g.Raw(`SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name <> 'goose_db_version'`).Scan(&tables).Error; err != nil {
			t.Fatal(err)
		}
		for _, tb := range tables {
			var cols []struct {
				Name, Type string
				NotNull    int     `gorm:"column:notnull"`
				Dflt       *string `gorm:"column:dflt_value"`
				PK         int     `gorm:"column:pk"`
			}
			if err := g.Raw("SELECT name, type, \"notnull\", dflt_value, pk FROM pragma_table_info(?)", tb).Scan(&cols).Error; err != nil {
				t.Fatal(err)
			}
			for _, c := range cols {
				out = append(out, fmt.Sprintf("column %s.%s %s notnull=%d pk=%d default=%v", tb, c.Name, strings.ToLower(c.Type), c.NotNull, c.PK, deref(c.Dflt)))
			}
			var idx []struct {
				Name   string
				Unique int `gorm:"column:unique"`
			}
			if err := g.Raw("SELECT name, \"unique\" FROM pragma_index_list(?)", tb).Scan(&idx).Error; err != nil {
				t.Fatal(err)
			}
			for _, i := range idx {
				var cs []struct {
					Seqno int
					Name  string
				}
				if err := g.Raw("SELECT seqno, name FROM pragma_index_info(?)", i.Name).Scan(&cs).Error; err != nil {
					t.Fatal(err)
				}
				for _, c := range cs {
					out = append(out, fmt.Sprintf("index %s.%s #%d %s unique=%d", tb, i.Name, c.Seqno, c.Name, i.Unique))
				}
			}
		}
	}
	slices.Sort(out)
	return out
}

func deref(s *string) string {
	if s == nil {
		return "NULL"
	}
	return *s
}
