package service

import (
	"context"
	"errors"
	"fmt"
	"regexp"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"careloop/model"
)

// WeChatPhone is what phone binding needs from WeChat.
type WeChatPhone interface {
	PhoneNumber(ctx context.Context, code string) (string, error)
}

// Errors of phone binding.
var (
	ErrPhoneTaken   = model.NewError(model.KindConflict, "phone_taken", "该手机号已绑定其他微信账号，请联系医院客服")
	ErrInvalidPhone = model.NewError(model.KindRule, "invalid_phone", "手机号格式不正确")
)

var mainlandMobile = regexp.MustCompile(`^1[3-9]\d{9}$`)

// Phones binds patients' phone numbers.
type Phones struct {
	db     *model.DB
	wx     WeChatPhone
	sealer *Sealer
}

// NewPhones returns the phone-binding use case.
func NewPhones(db *model.DB, wx WeChatPhone, sealer *Sealer) *Phones {
	return &Phones{db: db, wx: wx, sealer: sealer}
}

// Bind exchanges a getPhoneNumber code for the phone and binds it to the
// calling patient. When a patient imported from the HIS already has that
// phone (and no WeChat identity), this WeChat identity moves to that patient
// and the empty self-registered record goes: one person, one record. It
// returns the patient the caller now is.
func (s *Phones) Bind(ctx context.Context, p Principal, code string) (*model.Patient, error) {
	if !p.IsPatient() {
		return nil, model.ErrForbidden
	}
	if code == "" || len(code) > 128 {
		return nil, ErrInvalidCode
	}
	phone, err := s.wx.PhoneNumber(ctx, code)
	if err != nil {
		var wc wechatCoder
		if errors.As(err, &wc) && (wc.WeChatCode() == 40029 || wc.WeChatCode() == 40163) {
			return nil, ErrInvalidCode
		}
		return nil, fmt.Errorf("%w: %v", ErrWeChatDown, err)
	}
	if !mainlandMobile.MatchString(phone) {
		return nil, ErrInvalidPhone
	}
	hash := s.sealer.Hash(phone)
	// No locking read on the phone hash: on MySQL a locking read of a row
	// that does not exist takes gap locks, and two binds of different phones
	// then deadlock. The unique index on phone_hash is the arbiter instead.
	for attempt := 0; attempt < 2; attempt++ {
		var owner model.Patient
		err := s.db.Conn(ctx).Where("phone_hash = ?", hash).Take(&owner).Error
		switch {
		case errors.Is(err, gorm.ErrRecordNotFound):
			res := s.db.Conn(ctx).Model(&model.Patient{}).Where("id = ?", p.ID).
				Updates(map[string]any{"phone_hash": hash, "phone_enc": s.sealer.Seal([]byte(phone))})
			if model.IsDuplicate(res.Error) {
				continue // bound by someone else meanwhile: look again
			}
			if res.Error != nil {
				return nil, fmt.Errorf("bind phone: %w", res.Error)
			}
			return s.load(ctx, p.ID)
		case err != nil:
			return nil, fmt.Errorf("find phone owner: %w", err)
		case owner.ID == p.ID:
			return &owner, nil
		case owner.OpenID != nil:
			return nil, ErrPhoneTaken
		}
		var out model.Patient
		if err := s.db.InTx(ctx, func(ctx context.Context) error { return s.mergeInto(ctx, p.ID, owner.ID, &out) }); err != nil {
			return nil, err
		}
		return &out, nil
	}
	return nil, ErrPhoneTaken
}

func (s *Phones) load(ctx context.Context, id uint64) (*model.Patient, error) {
	var pt model.Patient
	if err := s.db.Conn(ctx).Where("id = ?", id).Take(&pt).Error; err != nil {
		return nil, model.NotFound(err)
	}
	return &pt, nil
}

// mergeInto moves the WeChat identity of patient selfID into the imported
// patient ownerID, re-points selfID's sessions, and removes selfID. Both rows
// are locked by primary key, in id order, so concurrent merges cannot
// deadlock.
func (s *Phones) mergeInto(ctx context.Context, selfID, ownerID uint64, out *model.Patient) error {
	db := s.db.Conn(ctx)
	var rows []model.Patient
	if err := db.Clauses(clause.Locking{Strength: "UPDATE"}).Where("id IN ?", []uint64{selfID, ownerID}).
		Order("id").Find(&rows).Error; err != nil {
		return err
	}
	var self, owner *model.Patient
	for i := range rows {
		switch rows[i].ID {
		case selfID:
			self = &rows[i]
		case ownerID:
			owner = &rows[i]
		}
	}
	if self == nil {
		return model.ErrNotFound
	}
	if owner == nil || owner.OpenID != nil {
		return ErrPhoneTaken // claimed by another WeChat user meanwhile
	}
	openID, unionID := self.OpenID, self.UnionID
	// Free the unique openid first, then give it to owner.
	if err := db.Model(&model.Patient{}).Where("id = ?", self.ID).Updates(map[string]any{"open_id": nil, "union_id": nil}).Error; err != nil {
		return err
	}
	upd := map[string]any{"open_id": openID}
	if owner.UnionID == nil {
		upd["union_id"] = unionID
	}
	if owner.Source == "" && self.Source != "" {
		upd["source"] = self.Source
	}
	if err := db.Model(&model.Patient{}).Where("id = ?", owner.ID).Updates(upd).Error; err != nil {
		return err
	}
	if err := db.Model(&model.Session{}).Where("subject = ? AND subject_id = ?", model.SubjectPatient, self.ID).
		Update("subject_id", owner.ID).Error; err != nil {
		return err
	}
	if err := db.Delete(&model.Patient{}, self.ID).Error; err != nil {
		return err
	}
	return db.Where("id = ?", owner.ID).Take(out).Error
}
