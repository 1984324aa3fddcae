package model_test

import (
	"context"
	"errors"
	"testing"

	"careloop/model"
	"careloop/testenv"
)

// OnChange hears of a committed change once per transaction, never of one
// rolled back, and at once of a change outside a transaction.
func TestOnChangeAfterCommit(t *testing.T) {
	for _, backend := range testenv.Backends() {
		t.Run(backend, func(t *testing.T) {
			db, ctx := open(t, backend), context.Background()
			if err := db.AutoMigrate(ctx); err != nil {
				t.Fatal(err)
			}
			heard := 0
			if err := db.OnChange([]string{db.TableOf(&model.Staff{})}, func() { heard++ }); err != nil {
				t.Fatal(err)
			}
			a, b := model.Staff{Username: "a", Role: model.RoleDoctor}, model.Staff{Username: "b", Role: model.RoleDoctor}
			db.Gorm().Create(&a)
			db.Gorm().Create(&b)
			if heard != 0 {
				t.Fatalf("a create was heard: %d", heard)
			}
			err := db.InTx(ctx, func(ctx context.Context) error {
				db.Conn(ctx).Model(&model.Staff{}).Where("id = ?", a.ID).Update("name", "甲")
				db.Conn(ctx).Model(&model.Staff{}).Where("id = ?", b.ID).Update("name", "乙")
				if heard != 0 {
					t.Error("heard before the commit")
				}
				return nil
			})
			if err != nil || heard != 1 {
				t.Fatalf("after a committed transaction of two updates: heard %d (%v)", heard, err)
			}
			_ = db.InTx(ctx, func(ctx context.Context) error {
				db.Conn(ctx).Model(&model.Staff{}).Where("id = ?", a.ID).Update("name", "丙")
				return errors.New("roll back")
			})
			if heard != 1 {
				t.Fatalf("a rolled-back change was heard: %d", heard)
			}
			db.Gorm().Model(&model.Staff{}).Where("id = ?", a.ID).Update("name", "丁")
			if heard != 2 {
				t.Fatalf("a change outside a transaction: heard %d", heard)
			}
			db.Gorm().Model(&model.Patient{}).Where("id = ?", 1).Update("name", "x")
			if heard != 2 {
				t.Fatalf("a change of another table was heard: %d", heard)
			}
		})
	}
}
