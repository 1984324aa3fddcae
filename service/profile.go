package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"gorm.io/gorm"

	"careloop/model"
)

// Errors of the patient profile.
var (
	ErrConsentRequired = model.NewError(model.KindRule, "consent_required", "请先同意《健康信息处理授权》后再填写健康档案")
	ErrBadGender       = model.NewError(model.KindRule, "invalid_gender", "性别只能是男、女或未知")
	ErrBadDate         = model.NewError(model.KindRule, "invalid_date", "日期格式应为 YYYY-MM-DD，且不能晚于今天")
	ErrBadName         = model.NewError(model.KindRule, "invalid_name", "姓名应为 1 到 32 个字")
	ErrBadConsent      = model.NewError(model.KindRule, "invalid_consent", "授权类型不正确")
	ErrErased          = model.NewError(model.KindForbidden, "account_erased", "该账号已注销")
)

// Profile holds what a patient does with their own record: profile, health
// archive, consents, export and erasure.
type Profile struct {
	db     *model.DB
	sealer *Sealer
	now    func() time.Time
}

// NewProfile returns the profile use cases.
func NewProfile(db *model.DB, sealer *Sealer, now func() time.Time) *Profile {
	if now == nil {
		now = time.Now
	}
	return &Profile{db: db, sealer: sealer, now: now}
}

// Me loads the calling patient.
func (s *Profile) Me(ctx context.Context, p Principal) (*model.Patient, error) {
	if !p.IsPatient() {
		return nil, model.ErrForbidden
	}
	var pt model.Patient
	if err := s.db.Conn(ctx).Where("id = ?", p.ID).Take(&pt).Error; err != nil {
		return nil, fmt.Errorf("load patient %d: %w", p.ID, model.NotFound(err))
	}
	return &pt, nil
}

// Phone returns the patient's phone in clear, or "".
func (s *Profile) Phone(pt *model.Patient) string { return s.sealer.OpenString(pt.PhoneEnc) }

// ProfileUpdate is what a patient may change about themself; nil leaves a
// field as it is.
type ProfileUpdate struct {
	Name      *string
	Gender    *string
	BirthDate *string
	// IDCard sets the ID card (身份证; "" removes it): birth date, gender and
	// region follow it.
	IDCard *string
	// RegionCode is a six-digit GB/T 2260 code ("" clears it).
	RegionCode *string
	// Source is the first touch; it is kept once set.
	Source *string
}

// ParseGender accepts male/female/unknown and 男/女.
func ParseGender(g string) (string, error) {
	switch strings.TrimSpace(strings.ToLower(g)) {
	case "male", "m", "男":
		return "male", nil
	case "female", "f", "女":
		return "female", nil
	case "unknown", "", "未知":
		return "unknown", nil
	}
	return "", ErrBadGender
}

// ParseDate reads YYYY-MM-DD (or YYYY/MM/DD) as a calendar date (stored as
// UTC midnight, see model.DateString), not after today in Asia/Shanghai.
func ParseDate(s string, now time.Time) (*time.Time, error) {
	s = strings.TrimSpace(strings.ReplaceAll(s, "/", "-"))
	if s == "" {
		return nil, nil
	}
	d, err := time.Parse("2006-1-2", s)
	if err != nil || model.DateString(d) > now.In(model.Shanghai).Format(time.DateOnly) || d.Year() < 1900 {
		return nil, ErrBadDate
	}
	return &d, nil
}

func checkName(n string) (string, error) {
	n = strings.TrimSpace(n)
	if c := utf8.RuneCountInString(n); c == 0 || c > 32 {
		return "", ErrBadName
	}
	return n, nil
}

// UpdateMe changes the calling patient's profile.
func (s *Profile) UpdateMe(ctx context.Context, p Principal, u ProfileUpdate) (*model.Patient, error) {
	pt, err := s.Me(ctx, p)
	if err != nil {
		return nil, err
	}
	upd := map[string]any{}
	gender, birth := pt.Gender, pt.BirthDate
	if u.Name != nil {
		n, err := checkName(*u.Name)
		if err != nil {
			return nil, err
		}
		upd["name"] = n
	}
	if u.Gender != nil {
		g, err := ParseGender(*u.Gender)
		if err != nil {
			return nil, err
		}
		upd["gender"] = g
		gender = g
	}
	if u.BirthDate != nil {
		d, err := ParseDate(*u.BirthDate, s.now())
		if err != nil {
			return nil, err
		}
		upd["birth_date"] = d
		birth = d
	}
	if u.RegionCode != nil {
		code := strings.TrimSpace(*u.RegionCode)
		if code != "" && !model.ValidRegion(code) {
			return nil, ErrBadRegion
		}
		upd["region_code"], upd["region"] = code, model.RegionName(code)
	}
	switch {
	case u.IDCard != nil && strings.TrimSpace(*u.IDCard) == "":
		upd["id_card_hash"], upd["id_card_enc"], upd["id_card_mask"] = nil, nil, ""
	case u.IDCard != nil:
		id, err := model.ParseIDCard(*u.IDCard, s.now())
		if err != nil {
			return nil, err
		}
		// What the request says beside the card must agree with it; what
		// it does not say follows the card.
		if !agrees(id, pickDate(u.BirthDate != nil, birth), pickGender(u.Gender != nil, gender)) {
			return nil, ErrIDCardMismatch
		}
		for k, v := range s.sealer.idCardColumns(id) {
			upd[k] = v
		}
		b := id.Birth
		upd["birth_date"], upd["gender"] = &b, id.Gender
		if u.RegionCode == nil {
			upd["region_code"], upd["region"] = id.Region, model.RegionName(id.Region)
		}
	case pt.IDCardEnc != nil && (u.Gender != nil || u.BirthDate != nil):
		// A card on record: a change of birth date or gender must agree with it.
		if id, err := model.ParseIDCard(s.sealer.IDCardOf(pt.IDCardEnc), s.now()); err == nil && !agrees(id, birth, gender) {
			return nil, ErrIDCardMismatch
		}
	}
	if u.Source != nil && pt.Source == "" {
		upd["source"] = model.Truncate(strings.TrimSpace(*u.Source), 128)
	}
	if len(upd) > 0 {
		if err := s.db.Conn(ctx).Model(&model.Patient{}).Where("id = ?", p.ID).Updates(upd).Error; err != nil {
			if model.IsDuplicate(err) {
				return nil, ErrIDCardTaken
			}
			return nil, fmt.Errorf("update patient: %w", err)
		}
	}
	return s.Me(ctx, p)
}

// pickDate is d when the request named it, else nil.
func pickDate(given bool, d *time.Time) *time.Time {
	if given {
		return d
	}
	return nil
}

// pickGender is g when the request named it, else "".
func pickGender(given bool, g string) string {
	if given {
		return g
	}
	return ""
}

// HealthData is the health archive's content.
type HealthData struct {
	Allergies     []string `json:"allergies"`
	Medications   []string `json:"medications"`
	PastHistory   []string `json:"past_history"`
	FamilyHistory []string `json:"family_history"`
	Notes         string   `json:"notes"`
}

func (h *HealthData) normalize() error {
	for _, list := range []*[]string{&h.Allergies, &h.Medications, &h.PastHistory, &h.FamilyHistory} {
		if *list == nil {
			*list = []string{}
		}
		if len(*list) > 50 {
			return model.ErrInvalid.WithMessage("每项最多 50 条")
		}
		for i, v := range *list {
			(*list)[i] = model.Truncate(strings.TrimSpace(v), 100)
		}
	}
	h.Notes = model.Truncate(h.Notes, 1000)
	return nil
}

// LoadHealth opens a patient's health archive (empty when none).
func (s *Profile) LoadHealth(ctx context.Context, patientID uint64) (HealthData, time.Time, error) {
	var h model.HealthArchive
	err := s.db.Conn(ctx).Where("patient_id = ?", patientID).Take(&h).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		d := HealthData{}
		_ = d.normalize()
		return d, time.Time{}, nil
	}
	if err != nil {
		return HealthData{}, time.Time{}, err
	}
	plain, err := s.sealer.Open(h.DataEnc)
	if err != nil {
		return HealthData{}, time.Time{}, err
	}
	var d HealthData
	if err := json.Unmarshal(plain, &d); err != nil {
		return HealthData{}, time.Time{}, err
	}
	_ = d.normalize()
	return d, h.UpdatedAt, nil
}

// Health returns the caller's own health archive.
func (s *Profile) Health(ctx context.Context, p Principal) (HealthData, time.Time, error) {
	if !p.IsPatient() {
		return HealthData{}, time.Time{}, model.ErrForbidden
	}
	return s.LoadHealth(ctx, p.ID)
}

// UpdateHealth replaces the caller's health archive; it needs the
// health-data consent.
func (s *Profile) UpdateHealth(ctx context.Context, p Principal, d HealthData) (HealthData, error) {
	if !p.IsPatient() {
		return HealthData{}, model.ErrForbidden
	}
	if err := d.normalize(); err != nil {
		return HealthData{}, err
	}
	ok, err := s.HasConsent(ctx, p.ID, model.ConsentHealthData)
	if err != nil {
		return HealthData{}, err
	}
	if !ok {
		return HealthData{}, ErrConsentRequired
	}
	plain, _ := json.Marshal(d)
	h := model.HealthArchive{PatientID: p.ID, DataEnc: s.sealer.Seal(plain), UpdatedAt: s.now()}
	if err := s.db.InTx(ctx, func(ctx context.Context) error {
		if err := s.db.Conn(ctx).Save(&h).Error; err != nil {
			return err
		}
		return markArchive(ctx, s.db, s.sealer, p.ID, d, h.UpdatedAt)
	}); err != nil {
		return HealthData{}, fmt.Errorf("save health archive: %w", err)
	}
	return d, nil
}

// ConsentState is the current decision on one kind.
type ConsentState struct {
	Kind    string
	Version string
	Granted bool
	At      time.Time
}

// Consents lists the caller's current decisions, one per kind.
func (s *Profile) Consents(ctx context.Context, patientID uint64) ([]ConsentState, error) {
	var out []ConsentState
	for _, kind := range []string{model.ConsentHealthData, model.ConsentMarketing} {
		var c model.Consent
		err := s.db.Conn(ctx).Where("patient_id = ? AND kind = ?", patientID, kind).Order("id DESC").Take(&c).Error
		if errors.Is(err, gorm.ErrRecordNotFound) {
			out = append(out, ConsentState{Kind: kind})
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, ConsentState{Kind: kind, Version: c.Version, Granted: c.Granted, At: c.CreatedAt})
	}
	return out, nil
}

// HasConsent reports whether patientID's latest decision on kind grants it.
func (s *Profile) HasConsent(ctx context.Context, patientID uint64, kind string) (bool, error) {
	var c model.Consent
	err := s.db.Conn(ctx).Where("patient_id = ? AND kind = ?", patientID, kind).Order("id DESC").Take(&c).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return false, nil
	}
	return err == nil && c.Granted, err
}

// SetConsent records a decision (grant or withdrawal) at a text version.
func (s *Profile) SetConsent(ctx context.Context, p Principal, kind, version string, granted bool) error {
	if !p.IsPatient() {
		return model.ErrForbidden
	}
	if kind != model.ConsentHealthData && kind != model.ConsentMarketing {
		return ErrBadConsent
	}
	version = strings.TrimSpace(version)
	if version == "" || len(version) > 16 {
		return model.ErrInvalid.WithMessage("需要授权文本的版本号")
	}
	return s.db.Conn(ctx).Create(&model.Consent{PatientID: p.ID, Kind: kind, Version: version, Granted: granted, IP: p.IP}).Error
}
