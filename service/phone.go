package service

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"gorm.io/gorm"

	"careloop/model"
	"careloop/wxconfig"
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

// cleanPhone reads a mainland mobile number as people write it (spaces, a
// +86 prefix) and reports whether it is one.
func cleanPhone(s string) (string, bool) {
	s = strings.TrimPrefix(strings.ReplaceAll(strings.TrimSpace(s), " ", ""), "+86")
	return s, mainlandMobile.MatchString(s)
}

// Phones binds patients' phone numbers.
type Phones struct {
	db     *model.DB
	wx     WeChatPhone
	sealer *Sealer
	data   *PatientData
}

// NewPhones returns the phone-binding use case.
func NewPhones(db *model.DB, wx WeChatPhone, sealer *Sealer, data *PatientData) *Phones {
	return &Phones{db: db, wx: wx, sealer: sealer, data: data}
}

// Bind exchanges a getPhoneNumber code for the phone and binds it to the
// calling patient. When a patient imported from the HIS already has that
// phone (and no WeChat identity), the two records of one person merge
// (PatientData.Merge): everything the self-registered record holds moves to
// the imported one, which takes the WeChat identity. It returns the patient
// the caller now is.
func (s *Phones) Bind(ctx context.Context, p Principal, code string) (*model.Patient, error) {
	if !p.IsPatient() {
		return nil, model.ErrForbidden
	}
	if code == "" || len(code) > 128 {
		return nil, ErrInvalidCode
	}
	phone, err := s.wx.PhoneNumber(ctx, code)
	if err != nil {
		if wxconfig.OutcomeOf(err) == wxconfig.OutcomeBadCode {
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
				Updates(s.sealer.phoneColumns(phone))
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
		return s.data.Merge(ctx, p.ID, owner.ID)
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

// BackfillPhoneTails fills the last four digits of phones stored before
// they were kept (patients and family members); a no-op once done.
func BackfillPhoneTails(ctx context.Context, db *model.DB, sealer *Sealer) error {
	for _, m := range []any{&model.Patient{}, &model.FamilyMember{}} {
		for {
			var rows []struct {
				ID       uint64
				PhoneEnc []byte
			}
			if err := db.Conn(ctx).Model(m).Select("id", "phone_enc").Where("phone_enc IS NOT NULL AND phone_tail = ''").
				Limit(500).Find(&rows).Error; err != nil {
				return fmt.Errorf("backfill phone tails of %s: %w", db.TableOf(m), err)
			}
			for _, r := range rows {
				tail := model.Tail(sealer.OpenString(r.PhoneEnc))
				if tail == "" {
					tail = "-" // unreadable: do not look again
				}
				if err := db.Conn(ctx).Model(m).Where("id = ?", r.ID).Update("phone_tail", tail).Error; err != nil {
					return fmt.Errorf("backfill phone tail of %s %d: %w", db.TableOf(m), r.ID, err)
				}
			}
			if len(rows) < 500 {
				break
			}
		}
	}
	return nil
}
