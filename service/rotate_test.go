package service_test

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"

	"careloop/model"
	"careloop/service"
	"careloop/testenv"
)

// A data key is rotated: values sealed under key 1 (or before key ids)
// are re-sealed under key 2 and the lookup hashes re-computed, so that key
// 1 can leave the ring; a second run changes nothing.
func TestRotateKeys(t *testing.T) {
	testenv.ForEachDB(t, func(t *testing.T, db *model.DB) {
		ctx := context.Background()
		old := bytes.Repeat([]byte{7}, 32)
		fresh := bytes.Repeat([]byte{9}, 32)
		s1, _ := service.NewKeyring(map[byte][]byte{1: old}, 1, 1)
		phone := "13800138123"
		h := s1.Hash(phone)
		p := model.Patient{Name: "轮换", Gender: "unknown", PhoneHash: &h, PhoneEnc: s1.Seal([]byte(phone))}
		if err := db.Gorm().Create(&p).Error; err != nil {
			t.Fatal(err)
		}
		if err := db.Gorm().Create(&model.HealthArchive{PatientID: p.ID, DataEnc: s1.Seal([]byte(`{"notes":"青霉素过敏"}`))}).Error; err != nil {
			t.Fatal(err)
		}
		// A chat message written before texts were sealed.
		if err := db.Gorm().Exec("INSERT INTO chat_messages (conversation_id, sender, kind, content, created_at) VALUES (1, 'patient', 'text', ?, ?)",
			"体检前要空腹吗", time.Now()).Error; err != nil {
			t.Fatal(err)
		}
		both, _ := service.NewKeyring(map[byte][]byte{1: old, 2: fresh}, 2, 2)
		if err := service.RotateKeys(ctx, db, both, nil); err != nil {
			t.Fatal(err)
		}
		var stored string
		db.Gorm().Table("chat_messages").Select("content").Row().Scan(&stored)
		if !model.IsSealedText(stored) {
			t.Fatalf("a plain chat message was not sealed: %q", stored)
		}
		var msg model.ChatMessage
		db.Gorm().Take(&msg)
		if msg.Content != "体检前要空腹吗" {
			t.Fatalf("the sealed message reads %q", msg.Content)
		}
		only2, _ := service.NewKeyring(map[byte][]byte{2: fresh}, 2, 2)
		var got model.Patient
		db.Gorm().Where("id = ?", p.ID).Take(&got)
		var arch model.HealthArchive
		db.Gorm().Where("patient_id = ?", p.ID).Take(&arch)
		if only2.OpenString(got.PhoneEnc) != phone || only2.KeyID(got.PhoneEnc) != 2 || got.PhoneHash == nil || *got.PhoneHash != only2.Hash(phone) {
			t.Fatalf("phone after rotation: key %d, hash ok %v", only2.KeyID(got.PhoneEnc), got.PhoneHash != nil && *got.PhoneHash == only2.Hash(phone))
		}
		if only2.OpenString(arch.DataEnc) != `{"notes":"青霉素过敏"}` {
			t.Fatal("the archive does not open with the new key alone")
		}
		changed := map[string]int{}
		if err := service.RotateKeys(ctx, db, both, func(table, column string, _, n int) { changed[table+"."+column] = n }); err != nil {
			t.Fatal(err)
		}
		for col, n := range changed {
			if n != 0 {
				t.Fatalf("a second run changed %d of %s", n, col)
			}
		}
		if len(changed) < 10 {
			t.Fatalf("progress for %d columns only", len(changed))
		}
		// Without the old key, what it sealed cannot be opened: rotate-key says which.
		var p2 = model.Patient{Name: "未轮换", Gender: "unknown", PhoneEnc: s1.Seal([]byte("13900139123"))}
		db.Gorm().Create(&p2)
		if err := service.RotateKeys(ctx, db, only2, nil); err == nil {
			t.Fatal("rotating without the key that sealed a value succeeded")
		}
	})
}

// Files rotate too: one stored in clear and one sealed under key 1 are
// re-sealed under key 2, then open with key 2 alone; a second run does nothing.
func TestRotateFiles(t *testing.T) {
	ctx := context.Background()
	inner := service.LocalFiles{Dir: t.TempDir()}
	old, fresh := bytes.Repeat([]byte{7}, 32), bytes.Repeat([]byte{9}, 32)
	s1, _ := service.NewKeyring(map[byte][]byte{1: old}, 1, 1)
	pdf := append([]byte("%PDF-1.4 "), bytes.Repeat([]byte("报告"), 50000)...)
	if err := inner.Put(ctx, "reports/plain.pdf", pdf); err != nil {
		t.Fatal(err)
	}
	if err := (service.SealedFiles{Inner: inner, Sealer: s1}).Put(ctx, "reports/old.pdf", pdf); err != nil {
		t.Fatal(err)
	}
	both, _ := service.NewKeyring(map[byte][]byte{1: old, 2: fresh}, 2, 2)
	if n, err := (service.SealedFiles{Inner: inner, Sealer: both}).Rotate(ctx); err != nil || n != 2 {
		t.Fatalf("rotate: %d %v", n, err)
	}
	only2, _ := service.NewKeyring(map[byte][]byte{2: fresh}, 2, 2)
	for _, key := range []string{"reports/plain.pdf", "reports/old.pdf"} {
		rc, err := (service.SealedFiles{Inner: inner, Sealer: only2}).Open(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(got, pdf) {
			t.Fatalf("%s after rotation: %d bytes, %v", key, len(got), err)
		}
		raw, _ := inner.Open(ctx, key)
		b, _ := io.ReadAll(raw)
		raw.Close()
		if bytes.Contains(b, []byte("%PDF")) {
			t.Fatalf("%s is in clear on disk", key)
		}
	}
	if n, err := (service.SealedFiles{Inner: inner, Sealer: both}).Rotate(ctx); err != nil || n != 0 {
		t.Fatalf("second rotation: %d %v", n, err)
	}
}
