package service

import (
	"time"

	"careloop/model"
)

// Errors of real-name identity.
var (
	ErrIDCardMismatch = model.NewError(model.KindRule, "id_card_mismatch", "出生日期或性别与身份证号不一致")
	ErrIDCardTaken    = model.NewError(model.KindConflict, "id_card_taken", "该身份证号已登记在其他账号，请联系医院客服")
	ErrBadRegion      = model.NewError(model.KindRule, "invalid_region", "地区代码应为 6 位行政区划代码（GB/T 2260）")
	ErrIDCardConflict = model.NewError(model.KindConflict, "id_card_conflict", "该手机号在医院登记的身份证与您填写的不一致，请联系医院客服")
)

// idCardHash is the keyed hash an ID card is found by.
func (s *Sealer) idCardHash(number string) string { return s.Hash("idcard|" + number) }

// idCardForms are the stored forms of an ID card: keyed hash, sealed
// number, masked number.
func (s *Sealer) idCardForms(number string) (hash *string, enc []byte, mask string) {
	h := s.idCardHash(number)
	return &h, s.Seal([]byte(number)), model.MaskIDCard(number)
}

// idCardColumns are idCardForms as column updates.
func (s *Sealer) idCardColumns(id model.IDCard) map[string]any {
	h, enc, mask := s.idCardForms(id.Number)
	return map[string]any{"id_card_hash": *h, "id_card_enc": enc, "id_card_mask": mask}
}

// phoneForms are the stored forms of a phone: keyed hash, sealed number,
// last four digits.
func (s *Sealer) phoneForms(phone string) (hash *string, enc []byte, tail string) {
	h := s.Hash(phone)
	return &h, s.Seal([]byte(phone)), model.Tail(phone)
}

// phoneColumns are phoneForms as column updates.
func (s *Sealer) phoneColumns(phone string) map[string]any {
	h, enc, tail := s.phoneForms(phone)
	return map[string]any{"phone_hash": *h, "phone_enc": enc, "phone_tail": tail}
}

// IDCardOf opens a stored ID card ("" when none).
func (s *Sealer) IDCardOf(sealed []byte) string { return s.OpenString(sealed) }

// agrees reports whether a birth date and gender given beside (or before)
// an ID card agree with it; nil and "unknown" agree with anything.
func agrees(id model.IDCard, birth *time.Time, gender string) bool {
	if birth != nil && model.DateString(*birth) != model.DateString(id.Birth) {
		return false
	}
	return gender == "" || gender == "unknown" || gender == id.Gender
}
