package service_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"io/fs"
	"testing"

	"careloop/model"
	"careloop/service"
	"careloop/testenv"
)

// Both stores keep a file whole across chunks, replace it whole, and say
// "not found" as fs.ErrNotExist.
func TestFileStores(t *testing.T) {
	testenv.ForEachDB(t, func(t *testing.T, db *model.DB) {
		stores := map[string]service.FileStore{"db": service.DBFiles{DB: db}, "local": service.LocalFiles{Dir: t.TempDir()}}
		for name, st := range stores {
			t.Run(name, func(t *testing.T) {
				ctx := context.Background()
				big := make([]byte, 1300<<10) // three chunks
				rand.Read(big)
				read := func(key string) ([]byte, error) {
					rc, err := st.Open(ctx, key)
					if err != nil {
						return nil, err
					}
					defer rc.Close()
					return io.ReadAll(rc)
				}
				if err := st.Put(ctx, "reports/1/v1.pdf", big); err != nil {
					t.Fatal(err)
				}
				if got, err := read("reports/1/v1.pdf"); err != nil || !bytes.Equal(got, big) {
					t.Fatalf("read back: %d bytes, %v", len(got), err)
				}
				small := []byte("%PDF-1.4 corrected")
				if err := st.Put(ctx, "reports/1/v1.pdf", small); err != nil {
					t.Fatal(err)
				}
				if got, _ := read("reports/1/v1.pdf"); !bytes.Equal(got, small) {
					t.Fatalf("replaced: %d bytes", len(got))
				}
				if err := st.Put(ctx, "empty", nil); err != nil {
					t.Fatal(err)
				}
				if got, err := read("empty"); err != nil || len(got) != 0 {
					t.Fatalf("empty file: %v %v", got, err)
				}
				if _, err := read("nothing/here"); !errors.Is(err, fs.ErrNotExist) {
					t.Fatalf("missing: %v", err)
				}
			})
		}
	})
}
