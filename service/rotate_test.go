package service_test

import (
	"bytes"
	"context"
	"testing"

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
		both, _ := service.NewKeyring(map[byte][]byte{1: old, 2: fresh}, 2, 2)
		if err := service.RotateKeys(ctx, db, both, nil); err != nil {
			t.Fatal(err)
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
		changed := 0
		if err := service.RotateKeys(ctx, db, both, func(_, _ string, _, n int) { changed = n }); err != nil || changed != 0 {
			t.Fatalf("a second run changed %d (%v)", changed, err)
		}
		// Without the old key, what it sealed cannot be opened: rotate-key says which.
		var p2 = model.Patient{Name: "未轮换", Gender: "unknown", PhoneEnc: s1.Seal([]byte("13900139123"))}
		db.Gorm().Create(&p2)
		if err := service.RotateKeys(ctx, db, only2, nil); err == nil {
			t.Fatal("rotating without the key that sealed a value succeeded")
		}
	})
}
