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
	var out model.Patient
	err = s.db.InTx(ctx, func(ctx context.Context) error {
		db := s.db.Conn(ctx)
		var me model.Patient
		if err := db.Clauses(clause.Locking{Strength: "UPDATE"}).Where("id = ?", p.ID).Take(&me).Error; err != nil {
			return model.NotFound(err)
		}
		var owner model.Patient
		err := db.Clauses(clause.Locking{Strength: "UPDATE"}).Where("phone_hash = ?", hash).Take(&owner).Error
		switch {
		case errors.Is(err, gorm.ErrRecordNotFound):
			me.PhoneHash, me.PhoneEnc = &hash, s.sealer.Seal([]byte(phone))
			if err := db.Model(&me).Select("phone_hash", "phone_enc").Updates(&me).Error; err != nil {
				if model.IsDuplicate(err) {
					return ErrPhoneTaken
				}
				return err
			}
			out = me
			return nil
		case err != nil:
			return err
		case owner.ID == me.ID:
			out = me
			return nil
		case owner.OpenID != nil:
			return ErrPhoneTaken
		}
		return s.mergeInto(ctx, &me, &owner, &out)
	})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// mergeInto moves the WeChat identity of self into the imported patient
// owner, re-points self's sessions, and removes self.
func (s *Phones) mergeInto(ctx context.Context, self, owner, out *model.Patient) error {
	db := s.db.Conn(ctx)
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
