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

// idCardColumns are the stored forms of an ID card: keyed hash, sealed
// number, masked number.
func (s *Sealer) idCardColumns(id model.IDCard) map[string]any {
	h := s.idCardHash(id.Number)
	return map[string]any{"id_card_hash": h, "id_card_enc": s.Seal([]byte(id.Number)), "id_card_mask": model.MaskIDCard(id.Number)}
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
