package service

import (
	"context"
	"fmt"
	"strings"
	"time"

	"careloop/model"
)

// Family relations a patient may record.
var relations = map[string]bool{"spouse": true, "child": true, "parent": true, "sibling": true, "other": true}

// ErrBadRelation says the relation is not one of ours.
var ErrBadRelation = model.NewError(model.KindRule, "invalid_relation", "关系只能是配偶、子女、父母、兄弟姐妹或其他")

// FamilyInput is a relative as the patient enters them.
type FamilyInput struct {
	Name      string
	Relation  string
	Gender    string
	BirthDate string
	Phone     string
	// IDCard (身份证, optional): birth date and gender follow it.
	IDCard string
}

// Family manages a patient's relatives (就诊人).
type Family struct {
	db     *model.DB
	sealer *Sealer
	now    func() time.Time
}

// NewFamily returns the family use cases.
func NewFamily(db *model.DB, sealer *Sealer, now func() time.Time) *Family {
	if now == nil {
		now = time.Now
	}
	return &Family{db: db, sealer: sealer, now: now}
}

func (s *Family) fill(m *model.FamilyMember, in FamilyInput) error {
	name, err := checkName(in.Name)
	if err != nil {
		return err
	}
	if !relations[in.Relation] {
		return ErrBadRelation
	}
	g, err := ParseGender(in.Gender)
	if err != nil {
		return err
	}
	d, err := ParseDate(in.BirthDate, s.now())
	if err != nil {
		return err
	}
	m.Name, m.Relation, m.Gender, m.BirthDate = name, in.Relation, g, d
	m.IDCardHash, m.IDCardEnc, m.IDCardMask = nil, nil, ""
	if strings.TrimSpace(in.IDCard) != "" {
		id, err := model.ParseIDCard(in.IDCard, s.now())
		if err != nil {
			return err
		}
		if !agrees(id, d, g) {
			return ErrIDCardMismatch
		}
		b := id.Birth
		m.IDCardHash, m.IDCardEnc, m.IDCardMask = s.sealer.idCardForms(id.Number)
		m.BirthDate, m.Gender = &b, id.Gender
	}
	m.PhoneHash, m.PhoneEnc, m.PhoneTail = nil, nil, ""
	if in.Phone != "" {
		if !mainlandMobile.MatchString(in.Phone) {
			return ErrInvalidPhone
		}
		m.PhoneHash, m.PhoneEnc, m.PhoneTail = s.sealer.phoneForms(in.Phone)
	}
	return nil
}

// List returns the caller's relatives.
func (s *Family) List(ctx context.Context, p Principal) ([]model.FamilyMember, error) {
	if !p.IsPatient() {
		return nil, model.ErrForbidden
	}
	var out []model.FamilyMember
	err := s.db.Conn(ctx).Where("owner_id = ?", p.ID).Order("id").Find(&out).Error
	return out, err
}

// Get returns one of the caller's relatives; anyone else's is not found.
func (s *Family) Get(ctx context.Context, p Principal, id uint64) (*model.FamilyMember, error) {
	var m model.FamilyMember
	if err := s.db.Conn(ctx).Where("id = ? AND owner_id = ?", id, p.ID).Take(&m).Error; err != nil {
		return nil, model.NotFound(err)
	}
	return &m, nil
}

// Create adds a relative (at most 10 per patient).
func (s *Family) Create(ctx context.Context, p Principal, in FamilyInput) (*model.FamilyMember, error) {
	if !p.IsPatient() {
		return nil, model.ErrForbidden
	}
	m := model.FamilyMember{OwnerID: p.ID}
	if err := s.fill(&m, in); err != nil {
		return nil, err
	}
	n, err := model.Count(s.db.Conn(ctx).Model(&model.FamilyMember{}).Where("owner_id = ?", p.ID))
	if err != nil {
		return nil, fmt.Errorf("count family of patient %d: %w", p.ID, err)
	}
	if n >= 10 {
		return nil, model.NewError(model.KindRule, "family_limit", "最多添加 10 位就诊人")
	}
	if err := s.db.Conn(ctx).Create(&m).Error; err != nil {
		return nil, fmt.Errorf("create family member: %w", err)
	}
	return &m, nil
}

// Update changes one of the caller's relatives.
func (s *Family) Update(ctx context.Context, p Principal, id uint64, in FamilyInput) (*model.FamilyMember, error) {
	m, err := s.Get(ctx, p, id)
	if err != nil {
		return nil, err
	}
	if err := s.fill(m, in); err != nil {
		return nil, err
	}
	if err := s.db.Conn(ctx).Select("name", "relation", "gender", "birth_date", "phone_hash", "phone_enc", "phone_tail", "id_card_hash", "id_card_enc", "id_card_mask", "updated_at").
		Where("owner_id = ?", p.ID).Updates(m).Error; err != nil {
		return nil, err
	}
	return m, nil
}

// Delete removes one of the caller's relatives.
func (s *Family) Delete(ctx context.Context, p Principal, id uint64) error {
	res := s.db.Conn(ctx).Where("id = ? AND owner_id = ?", id, p.ID).Delete(&model.FamilyMember{})
	if res.Error != nil {
		return res.Error
	}
	if res.RowsAffected == 0 {
		return model.ErrNotFound
	}
	return nil
}

// Phone returns a relative's phone in clear, or "".
func (s *Family) Phone(m *model.FamilyMember) string { return s.sealer.OpenString(m.PhoneEnc) }
