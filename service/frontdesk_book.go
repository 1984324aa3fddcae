package service

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"gorm.io/gorm"

	"careloop/model"
)

// Audited front-desk changes made for a patient.
const (
	AuditDeskBook       = "booking.desk.book"
	AuditDeskCancel     = "booking.desk.cancel"
	AuditDeskReschedule = "booking.desk.reschedule"
	AuditDeskRegister   = "patient.desk.register"
)

// WalkInPatient is a person the front desk registers while booking for
// them: at the counter (a walk-in) or on the phone.
type WalkInPatient struct {
	Name      string
	Phone     string
	Gender    string // male, female or empty (the ID card decides when given)
	BirthDate string // YYYY-MM-DD or empty
	IDCard    string // optional
}

// DeskBookInput is a booking the front desk makes for a patient: an
// existing one (PatientID) or one registered now (New).
type DeskBookInput struct {
	PatientID      uint64
	New            *WalkInPatient
	PackageID      uint64
	SlotID         uint64
	IdempotencyKey string
}

// Errors of the front desk's bookings.
var (
	ErrNoPatientGiven = model.NewError(model.KindInvalid, "patient_required", "请选择患者，或填写新患者的姓名和手机号")
	// ErrPatientExists: the phone or ID card typed for a new patient is a
	// registered patient's, under another name; details name that patient.
	ErrPatientExists = model.NewError(model.KindConflict, "patient_exists", "该手机号或身份证号已登记为另一位患者，请从搜索结果中选择")
	ErrDeskNote      = model.NewError(model.KindRule, "bad_reason", "取消原因不能超过 60 个字")
)

// Book books for a patient at the front desk: the package's limits, the
// seats and the idempotency key hold as for the patient's own booking; the
// desk may book until the slot ends (a walk-in today), not only until the
// cut-off the evening before. A new patient is registered in the same step
// (found instead when the phone or ID card is already theirs under the same
// name). The patient is told as usual; the audit log says who booked.
func (f *FrontDesk) Book(ctx context.Context, by Principal, in DeskBookInput) (*model.Booking, bool, error) {
	if err := by.must(ActBookingsDesk); err != nil {
		return nil, false, err
	}
	// The desk's keys live beside the patients' own under a prefix.
	key := strings.TrimSpace(in.IdempotencyKey)
	if key == "" || len(key) > 59 {
		return nil, false, ErrIdemKeyMissing
	}
	patientID := in.PatientID
	switch {
	case in.New != nil && patientID == 0:
		id, err := f.register(ctx, by, *in.New)
		if err != nil {
			return nil, false, err
		}
		patientID = id
	case patientID == 0:
		return nil, false, ErrNoPatientGiven
	default:
		var pt model.Patient
		if err := f.db.Conn(ctx).Select("id", "erased_at", "blocked_at").Where("id = ?", patientID).Take(&pt).Error; err != nil {
			return nil, false, model.NotFound(err)
		}
		if pt.ErasedAt != nil {
			return nil, false, model.ErrNotFound
		}
		if pt.BlockedAt != nil {
			return nil, false, ErrBlocked
		}
	}
	b, created, err := f.b.book(ctx, patientID, BookInput{PackageID: in.PackageID, SlotID: in.SlotID, IdempotencyKey: "desk:" + key}, true)
	if err != nil {
		return nil, false, err
	}
	if created {
		if err := f.audit.Record(ctx, by, AuditDeskBook, &patientID, fmt.Sprintf("booking %d %s", b.ID, b.Code)); err != nil {
			return nil, false, err
		}
	}
	return b, created, nil
}

// register finds or creates the patient a walk-in is.
func (f *FrontDesk) register(ctx context.Context, by Principal, in WalkInPatient) (uint64, error) {
	now := f.now()
	name, err := checkName(in.Name)
	if err != nil {
		return 0, err
	}
	phone, ok := cleanPhone(in.Phone)
	if !ok {
		return 0, ErrInvalidPhone
	}
	gender, err := ParseGender(in.Gender)
	if err != nil {
		return 0, ErrBadGender
	}
	birth, err := ParseDate(in.BirthDate, now)
	if err != nil {
		return 0, ErrBadDate
	}
	var card *model.IDCard
	if v := strings.TrimSpace(in.IDCard); v != "" {
		id, err := model.ParseIDCard(v, now)
		if err != nil {
			return 0, model.ErrBadIDCard
		}
		if !agrees(id, birth, gender) {
			return 0, ErrIDCardMismatch
		}
		card = &id
		b := id.Birth
		birth, gender = &b, id.Gender
	}
	p := model.Patient{Name: name, Gender: gender, BirthDate: birth, Source: "前台登记"}
	p.PhoneHash, p.PhoneEnc, p.PhoneTail = f.sealer.phoneForms(phone)
	if card != nil {
		p.IDCardHash, p.IDCardEnc, p.IDCardMask = f.sealer.idCardForms(card.Number)
		p.RegionCode, p.Region = card.Region, model.RegionName(card.Region)
	}
	// The same person again (their ID card, else their phone) is found; a
	// racing request that registered them first (a double click, a retry)
	// is found on the second look.
	for attempt := 0; ; attempt++ {
		if id, err := f.registered(ctx, name, p.PhoneHash, p.IDCardHash); id != 0 || err != nil {
			return id, err
		}
		err := f.db.InTx(ctx, func(ctx context.Context) error {
			if err := f.db.Conn(ctx).Create(&p).Error; err != nil {
				return err
			}
			return f.audit.Record(ctx, by, AuditDeskRegister, &p.ID, "walk-in")
		})
		switch {
		case err == nil:
			return p.ID, nil
		case !model.IsDuplicate(err) || attempt > 0:
			return 0, fmt.Errorf("register walk-in patient: %w", err)
		}
		p.ID = 0
	}
}

// registered finds the patient who already holds the ID card hash (when
// given) or the phone hash: their id under the same name, ErrPatientExists
// under another; 0 for nobody.
func (f *FrontDesk) registered(ctx context.Context, name string, phoneHash, cardHash *string) (uint64, error) {
	q := f.db.Conn(ctx).Where("erased_at IS NULL AND phone_hash = ?", *phoneHash)
	if cardHash != nil {
		q = f.db.Conn(ctx).Where("erased_at IS NULL AND (id_card_hash = ? OR phone_hash = ?)", *cardHash, *phoneHash)
	}
	var found []model.Patient
	if err := q.Limit(2).Find(&found).Error; err != nil {
		return 0, fmt.Errorf("find walk-in patient: %w", err)
	}
	for _, p := range found {
		if p.Name != name || len(found) > 1 {
			return 0, ErrPatientExists.WithDetails(map[string]any{"patient_id": p.ID, "name": p.Name})
		}
		return p.ID, nil
	}
	return 0, nil
}

// Cancel cancels a booking for its patient (they called, or the hospital
// must): the seat and a coupon return, the reminders stop and the patient
// is told why. A booked booking can be cancelled until its slot ends.
func (f *FrontDesk) Cancel(ctx context.Context, by Principal, id uint64, reason string) (*model.Booking, error) {
	if err := by.must(ActBookingsDesk); err != nil {
		return nil, err
	}
	reason = strings.TrimSpace(reason)
	if len([]rune(reason)) > 60 {
		return nil, ErrDeskNote
	}
	b, err := f.booked(ctx, id)
	if err != nil {
		return nil, err
	}
	note := "预约号 " + b.Code + " 已由医院为您取消"
	if reason != "" {
		note += "：" + reason
	}
	err = f.db.InTx(ctx, func(ctx context.Context) error {
		if err := f.b.cancelTx(ctx, b, note, true); err != nil {
			return err
		}
		return f.audit.Record(ctx, by, AuditDeskCancel, &b.PatientID, fmt.Sprintf("booking %d %s %s", b.ID, b.Code, reason))
	})
	if err != nil {
		return nil, fmt.Errorf("cancel booking %d at the desk: %w", id, err)
	}
	f.out.Wake(ctx)
	f.b.seatsChanged(ctx, b.SlotID)
	return f.get(ctx, id)
}

// Reschedule moves a booking to another slot of its package for its
// patient, under the desk's rules (until the new slot ends); the patient is
// told of the new time.
func (f *FrontDesk) Reschedule(ctx context.Context, by Principal, id, slotID uint64) (*model.Booking, error) {
	if err := by.must(ActBookingsDesk); err != nil {
		return nil, err
	}
	b, err := f.booked(ctx, id)
	if err != nil {
		return nil, err
	}
	from := b.SlotID
	if err := f.b.move(ctx, b, slotID, true); err != nil {
		return nil, err
	}
	if from != b.SlotID {
		if err := f.audit.Record(ctx, by, AuditDeskReschedule, &b.PatientID, fmt.Sprintf("booking %d %s slot %d -> %d", b.ID, b.Code, from, b.SlotID)); err != nil {
			return nil, err
		}
	}
	return f.get(ctx, id)
}

// booked loads booking id, which must still be booked.
func (f *FrontDesk) booked(ctx context.Context, id uint64) (*model.Booking, error) {
	b, err := f.get(ctx, id)
	if err != nil {
		return nil, err
	}
	if b.Status != model.BookingBooked {
		return nil, ErrNotChangeable
	}
	return b, nil
}

func (f *FrontDesk) get(ctx context.Context, id uint64) (*model.Booking, error) {
	var b model.Booking
	if err := f.db.Conn(ctx).Where("id = ?", id).Take(&b).Error; err != nil {
		if errors.Is(err, gorm.ErrRecordNotFound) {
			return nil, model.ErrNotFound
		}
		return nil, err
	}
	return &b, nil
}
