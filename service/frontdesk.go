package service

import (
	"context"
	"encoding/base64"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gorm.io/gorm"

	"careloop/model"
	"careloop/notify"
)

// FrontDeskQuery finds bookings at the front desk.
type FrontDeskQuery struct {
	Date   string
	SlotID uint64
	Phone  string
	Code   string
	Status string
	// Q is the one search box: a booking code, a full phone, its last four
	// digits (尾号), an ID card, a HIS id or a name.
	Q string
	// Cursor continues after the page it came with; Limit is the page size
	// (default and at most 100).
	Cursor string
	Limit  int
}

var (
	bookingCodeRe = regexp.MustCompile(`^[A-Z0-9]{8}$`)
	phoneTailRe   = regexp.MustCompile(`^\d{4}$`)
)

// FrontDesk is the front desk's work on bookings.
type FrontDesk struct {
	db     *model.DB
	now    func() time.Time
	out    *notify.Outbox
	b      *Bookings // a move's effects: reminders withdrawn, points, surveys
	sealer *Sealer
	audit  *Audit
}

// NewFrontDesk returns the front-desk use cases.
func NewFrontDesk(b *Bookings, sealer *Sealer, audit *Audit) *FrontDesk {
	return &FrontDesk{db: b.db, now: b.now, out: b.out, b: b, sealer: sealer, audit: audit}
}

// Search lists bookings by day and slot, or finds them by phone or code, in
// the order the day runs (date, slot time, booking), a page at a time: the
// next page's cursor is empty after the last.
func (f *FrontDesk) Search(ctx context.Context, by Principal, q FrontDeskQuery) ([]model.Booking, string, error) {
	if err := by.must(ActBookingsDesk); err != nil {
		return nil, "", err
	}
	// The day's order is the slots' times: the booking's slot comes along.
	db := f.db.Conn(ctx).Table("bookings b").Select("b.*").Joins("JOIN slots s ON s.id = b.slot_id")
	q.Q = strings.TrimSpace(q.Q)
	switch up := strings.ToUpper(q.Q); {
	case q.Q == "":
	case mainlandMobile.MatchString(q.Q):
		q.Phone = q.Q
	case bookingCodeRe.MatchString(up) && !phoneTailRe.MatchString(q.Q):
		q.Code = up
	}
	switch {
	case q.Q != "" && q.Phone == "" && q.Code == "":
		// The person who comes: the patient themself, or a family member.
		db = db.Where("(b.family_member_id IS NULL AND b.patient_id IN (?)) OR b.family_member_id IN (?)", f.patientsMatching(ctx, q.Q), f.familyMatching(ctx, q.Q))
		if q.Date != "" {
			db = db.Where("b.date = ?", q.Date)
		}
	case strings.TrimSpace(q.Code) != "":
		db = db.Where("b.code = ?", strings.ToUpper(strings.TrimSpace(q.Code)))
	case strings.TrimSpace(q.Phone) != "":
		h := f.sealer.Hash(strings.TrimSpace(q.Phone))
		db = db.Where("b.patient_id IN (?) OR b.family_member_id IN (?)",
			f.db.Conn(ctx).Model(&model.Patient{}).Select("id").Where("phone_hash = ?", h),
			f.db.Conn(ctx).Model(&model.FamilyMember{}).Select("id").Where("phone_hash = ?", h))
	default:
		if q.Date == "" {
			q.Date = f.now().In(model.Shanghai).Format(time.DateOnly)
		}
		db = db.Where("b.date = ?", q.Date)
	}
	if q.SlotID != 0 {
		db = db.Where("b.slot_id = ?", q.SlotID)
	}
	if q.Status != "" {
		db = db.Where("b.status = ?", q.Status)
	}
	if q.Cursor != "" {
		date, start, id, ok := parseDeskCursor(q.Cursor)
		if !ok {
			return nil, "", ErrBadCursor
		}
		db = db.Where("(b.date > ? OR (b.date = ? AND s.`start` > ?) OR (b.date = ? AND s.`start` = ? AND b.id > ?))", date, date, start, date, start, id)
	}
	limit := q.Limit
	if limit <= 0 || limit > 100 {
		limit = 100
	}
	var rows []struct {
		model.Booking
		SlotStart string `gorm:"column:slot_start"`
	}
	if err := db.Select("b.*, s.`start` AS slot_start").Order("b.date, s.`start`, b.id").Limit(limit + 1).Find(&rows).Error; err != nil {
		return nil, "", err
	}
	next := ""
	if len(rows) > limit {
		rows = rows[:limit]
		last := rows[limit-1]
		next = base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, "%s|%s|%d", last.Date, last.SlotStart, last.ID))
	}
	out := make([]model.Booking, len(rows))
	for i := range rows {
		out[i] = rows[i].Booking
	}
	return out, next, nil
}

// parseDeskCursor reads a cursor Search gave out: the last row's date, slot
// start and id.
func parseDeskCursor(c string) (date, start string, id uint64, ok bool) {
	raw, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return "", "", 0, false
	}
	parts := strings.Split(string(raw), "|")
	if len(parts) != 3 {
		return "", "", 0, false
	}
	if _, err := time.Parse(time.DateOnly, parts[0]); err != nil {
		return "", "", 0, false
	}
	if _, err := time.Parse("15:04", parts[1]); err != nil {
		return "", "", 0, false
	}
	id, err = strconv.ParseUint(parts[2], 10, 64)
	return parts[0], parts[1], id, err == nil
}

// patientsMatching selects the ids of patients a search box text names.
func (f *FrontDesk) patientsMatching(ctx context.Context, q string) *gorm.DB {
	return whereIdentity(f.db.Conn(ctx).Model(&model.Patient{}).Select("id").Where("erased_at IS NULL"), f.sealer, f.now(), q)
}

// whereIdentity narrows a query of patients to those one search box text
// names: an ID card; four digits as a phone's tail (尾号) or a HIS id; else
// a HIS id or the start of a name.
func whereIdentity(db *gorm.DB, sealer *Sealer, now time.Time, q string) *gorm.DB {
	if h, ok := idCardHashOf(sealer, now, q); ok {
		return db.Where("id_card_hash = ?", h)
	}
	if phoneTailRe.MatchString(q) {
		return db.Where("phone_tail = ? OR his_id = ?", q, q)
	}
	return db.Where("his_id = ? OR name LIKE ?"+model.LikeEscapeClause, q, likePrefix(q))
}

// familyMatching is patientsMatching for family members (ID card, phone
// tail, name).
func (f *FrontDesk) familyMatching(ctx context.Context, q string) *gorm.DB {
	db := f.db.Conn(ctx).Model(&model.FamilyMember{}).Select("id")
	if h, ok := idCardHashOf(f.sealer, f.now(), q); ok {
		return db.Where("id_card_hash = ?", h)
	}
	if phoneTailRe.MatchString(q) {
		return db.Where("phone_tail = ?", q)
	}
	return db.Where("name LIKE ?"+model.LikeEscapeClause, likePrefix(q))
}

// idCardHashOf is the lookup hash of q when q is a valid ID card number.
func idCardHashOf(sealer *Sealer, now time.Time, q string) (string, bool) {
	if len(q) != 18 {
		return "", false
	}
	id, err := model.ParseIDCard(q, now)
	if err != nil {
		return "", false
	}
	return sealer.idCardHash(id.Number), true
}

// likePrefix is a LIKE pattern for text starting with s.
func likePrefix(s string) string { return model.LikeEscape(s) + "%" }

// People fills in who comes to each booking: the family member's or the
// patient's name and masked phone (two queries for the whole list).
func (f *FrontDesk) People(ctx context.Context, by Principal, vs []BookingView) error {
	if err := by.must(ActBookingsDesk); err != nil {
		return err
	}
	var pids, fids []uint64
	for _, v := range vs {
		if v.FamilyMemberID != nil {
			fids = append(fids, *v.FamilyMemberID)
		} else {
			pids = append(pids, v.PatientID)
		}
	}
	type who struct{ name, phone string }
	pats, fams := map[uint64]who{}, map[uint64]who{}
	if len(pids) > 0 {
		var ps []model.Patient
		if err := f.db.Conn(ctx).Select("id", "name", "phone_enc").Where("id IN ?", pids).Find(&ps).Error; err != nil {
			return fmt.Errorf("front desk: patients: %w", err)
		}
		for _, p := range ps {
			pats[p.ID] = who{p.Name, MaskPhone(f.sealer.OpenString(p.PhoneEnc))}
		}
	}
	if len(fids) > 0 {
		var ms []model.FamilyMember
		if err := f.db.Conn(ctx).Select("id", "name", "phone_enc").Where("id IN ?", fids).Find(&ms).Error; err != nil {
			return fmt.Errorf("front desk: family members: %w", err)
		}
		for _, m := range ms {
			fams[m.ID] = who{m.Name, MaskPhone(f.sealer.OpenString(m.PhoneEnc))}
		}
	}
	for i := range vs {
		w := pats[vs[i].PatientID]
		if vs[i].FamilyMemberID != nil {
			w = fams[*vs[i].FamilyMemberID]
		}
		vs[i].PersonName, vs[i].Phone = w.name, w.phone
	}
	return nil
}

// Transition moves a booking through the front desk's steps.
func (f *FrontDesk) Transition(ctx context.Context, by Principal, id uint64, to string) (*model.Booking, error) {
	if err := by.must(ActBookingsDesk); err != nil {
		return nil, err
	}
	from := model.BookingSteps[to]
	if from == "" {
		return nil, ErrBadTransition
	}
	var b model.Booking
	if err := f.db.Conn(ctx).Where("id = ?", id).Take(&b).Error; err != nil {
		return nil, model.NotFound(err)
	}
	now := f.now().UTC()
	upd := map[string]any{"status": to}
	switch to {
	case model.BookingCheckedIn:
		if !b.IsToday(now) {
			return nil, ErrNotToday
		}
		upd["checked_in_at"] = now
	case model.BookingCompleted:
		upd["completed_at"] = now
	case model.BookingNoShow:
		// Nobody misses a checkup before its day has begun.
		if !b.DayBegun(now) {
			return nil, ErrDayNotBegun
		}
		upd["active_day"] = nil
	}
	err := f.db.InTx(ctx, func(ctx context.Context) error {
		res := f.db.Conn(ctx).Model(&model.Booking{}).Where("id = ? AND status = ?", id, from).Updates(upd)
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected == 0 {
			return ErrBadTransition
		}
		if to == model.BookingNoShow {
			if err := f.b.cancelReminders(ctx, &b); err != nil {
				return err
			}
		}
		return f.b.afterTransition(ctx, &b, to)
	})
	if err != nil {
		return nil, err
	}
	f.out.Wake(ctx)
	_ = f.audit.Record(ctx, by, "booking."+to, &b.PatientID, fmt.Sprintf("booking %d", id))
	if err := f.db.Conn(ctx).Where("id = ?", id).Take(&b).Error; err != nil {
		return nil, err
	}
	return &b, nil
}

// Errors of the front desk.
var (
	ErrNotToday    = model.NewError(model.KindRule, "not_today", "只能为当天的预约办理签到")
	ErrDayNotBegun = model.NewError(model.KindRule, "day_not_begun", "预约当天开始后才能标记爽约")
	ErrNotUndoable = model.NewError(model.KindConflict, "not_undoable", "只能在预约当天撤销签到或爽约")
)

// Undo takes back a check-in or a no-show on the booking's own day: the
// booking is "booked" again (holding its day), a pending "missed" notice
// is cancelled. Audited.
func (f *FrontDesk) Undo(ctx context.Context, by Principal, id uint64) (*model.Booking, error) {
	if err := by.must(ActBookingsDesk); err != nil {
		return nil, err
	}
	var b model.Booking
	if err := f.db.Conn(ctx).Where("id = ?", id).Take(&b).Error; err != nil {
		return nil, model.NotFound(err)
	}
	now := f.now()
	if !model.BookingUndoable[b.Status] || !b.IsToday(now) {
		return nil, ErrNotUndoable
	}
	err := f.db.InTx(ctx, func(ctx context.Context) error {
		db := f.db.Conn(ctx)
		res := db.Model(&model.Booking{}).Where("id = ? AND status = ?", id, b.Status).
			Updates(map[string]any{"status": model.BookingBooked, "active_day": b.Date, "checked_in_at": nil})
		if model.IsDuplicate(res.Error) {
			return ErrDuplicateBooking // the person booked again that day meanwhile
		}
		if res.Error != nil {
			return fmt.Errorf("undo booking %d: %w", id, res.Error)
		}
		if res.RowsAffected == 0 {
			return ErrNotUndoable // changed meanwhile
		}
		if b.Status == model.BookingNoShow {
			if err := f.out.Withdraw(ctx, b.PatientID, notify.ReasonNoShow, fmt.Sprintf("booking-%d", b.ID), "前台已撤销爽约"); err != nil {
				return fmt.Errorf("cancel the missed notice of booking %d: %w", id, err)
			}
		}
		return f.audit.Record(ctx, by, "booking.undo", &b.PatientID, fmt.Sprintf("booking %d: %s → booked", id, b.Status))
	})
	if err != nil {
		return nil, err
	}
	if err := f.db.Conn(ctx).Where("id = ?", id).Take(&b).Error; err != nil {
		return nil, err
	}
	return &b, nil
}

// afterTransition writes the notices a completed or missed checkup causes.
func (s *Bookings) afterTransition(ctx context.Context, b *model.Booking, to string) error {
	switch to {
	case model.BookingCompleted:
		return s.events.bookingCompleted(ctx, b)
	case model.BookingNoShow:
		_, err := s.out.Enqueue(ctx, notify.Notice{PatientID: b.PatientID, Reason: notify.ReasonNoShow,
			Occurrence: fmt.Sprintf("booking-%d", b.ID),
			Params:     map[string]string{"title": "您错过了预约的体检", "note": "可在小程序中重新预约"}})
		return err
	}
	return nil
}

// MarkNoShows marks the bookings of days gone by that nobody came to, and
// writes their follow-up (a care rule; safe on many instances at once).
func (s *Bookings) MarkNoShows(ctx context.Context, now time.Time) error {
	today := now.In(model.Shanghai).Format(time.DateOnly)
	var missed []model.Booking
	if err := s.db.Conn(ctx).Where("status = ? AND date < ?", model.BookingBooked, today).Limit(1000).Find(&missed).Error; err != nil {
		return err
	}
	for i := range missed {
		b := &missed[i]
		err := s.db.InTx(ctx, func(ctx context.Context) error {
			res := s.db.Conn(ctx).Model(&model.Booking{}).Where("id = ? AND status = ?", b.ID, model.BookingBooked).
				Updates(map[string]any{"status": model.BookingNoShow, "active_day": nil})
			if res.Error != nil || res.RowsAffected == 0 {
				return res.Error
			}
			return s.afterTransition(ctx, b, model.BookingNoShow)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// AnnualRecheck invites patients whose last completed checkup was
// RecheckMonths ago and who have nothing booked since (a care rule).
func (s *Bookings) AnnualRecheck(ctx context.Context, now time.Time) error {
	rules := s.care.Current(ctx)
	local := now.In(model.Shanghai)
	if local.Hour() < 9 {
		return nil
	}
	cutoff := local.AddDate(0, -rules.RecheckMonths, 0).Format(time.DateOnly)
	type last struct {
		PatientID uint64
		Date      string
	}
	var rows []last
	// One query: the last completed checkup per patient, old enough, and
	// nothing booked or checked in since (a later completed checkup would
	// have been the maximum; a stale "booked" one is marked missed by day end).
	err := s.db.Conn(ctx).Model(&model.Booking{}).Select("patient_id, MAX(date) AS date").
		Where("status = ? AND family_member_id IS NULL", model.BookingCompleted).
		// An erased patient's visits stay for accounting, never for care.
		Where("patient_id NOT IN (?)", s.db.Conn(ctx).Model(&model.Patient{}).Select("id").Where("erased_at IS NOT NULL")).
		Where("patient_id NOT IN (?)", s.db.Conn(ctx).Model(&model.Booking{}).Select("patient_id").
			Where("family_member_id IS NULL AND status IN ?", []string{model.BookingBooked, model.BookingCheckedIn})).
		Group("patient_id").Having("MAX(date) <= ?", cutoff).Find(&rows).Error
	if err != nil {
		return err
	}
	notices := make([]notify.Notice, 0, len(rows))
	for _, r := range rows {
		notices = append(notices, notify.Notice{PatientID: r.PatientID, Reason: notify.ReasonAnnualRecheck, Occurrence: "after-" + r.Date,
			Params: map[string]string{"title": "年度体检提醒", "note": "距上次体检已近一年，欢迎预约复查"}})
	}
	if len(notices) == 0 {
		return nil
	}
	if err := s.out.EnqueueMany(ctx, notices); err != nil {
		return err
	}
	s.out.Wake(ctx)
	return nil
}
