package service

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"careloop/coord"
	"careloop/model"
	"careloop/notify"
)

// Errors of booking, each with a message for the patient.
var (
	ErrSlotFull         = model.NewError(model.KindConflict, "slot_full", "该时段已约满，请选择其他时段")
	ErrDuplicateBooking = model.NewError(model.KindConflict, "duplicate_booking", "该就诊人当天已有预约，不能重复预约")
	ErrSlotClosed       = model.NewError(model.KindRule, "slot_closed", "该时段暂停预约，请选择其他时段")
	ErrSlotMismatch     = model.NewError(model.KindRule, "slot_mismatch", "该时段不适用于所选套餐")
	ErrPastCutoff       = model.NewError(model.KindRule, "past_cutoff", "已过预约截止时间（体检前一天 18:00）")
	ErrOutsideWindow    = model.NewError(model.KindRule, "outside_window", "该日期暂未开放预约")
	ErrSlotOver         = model.NewError(model.KindRule, "slot_over", "该时段已结束，请选择其他时段")
	ErrGenderLimit      = model.NewError(model.KindRule, "gender_restricted", "该套餐不适用于该就诊人的性别")
	ErrAgeLimit         = model.NewError(model.KindRule, "age_restricted", "就诊人年龄不符合该套餐要求")
	ErrProfileMissing   = model.NewError(model.KindRule, "profile_incomplete", "请先完善就诊人的性别和出生日期")
	ErrIdemKeyMissing   = model.NewError(model.KindInvalid, "idempotency_key_required", "缺少 Idempotency-Key 请求头")
	ErrIdemKeyReused    = model.NewError(model.KindRule, "idempotency_key_reused", "该 Idempotency-Key 已用于另一次预约")
	ErrNotChangeable    = model.NewError(model.KindRule, "booking_not_changeable", "该预约已不能取消或改期（已过截止时间或状态已变化）")
	ErrBadTransition    = model.NewError(model.KindConflict, "invalid_transition", "该预约当前状态不允许此操作")
)

// BookingConfig holds the booking rules.
type BookingConfig struct {
	WindowDays    int // how far ahead patients may book (default 30)
	CutoffHour    int // bookings close at this hour the day before (default 18)
	RatePerMinute int // booking attempts per patient per minute (default 30)
}

// Bookings is the booking use case: packages, slots, booking, cancelling,
// rescheduling, and the front desk.
type Bookings struct {
	db      *model.DB
	out     *notify.Outbox
	limiter KV
	bus     Bus
	changed *coord.Coalescer // slot groups whose seats changed, for the other instances
	care    *CareRules
	prices  Pricer
	events  *Events
	cfg     BookingConfig
	now     func() time.Time

	cache ttlCache
	gens  sync.Map // slot group -> *atomic.Uint64: its listings' number (forgetListings)
}

// Pricer gives a patient's price for a package (Points: the level's
// discount).
type Pricer interface {
	DiscountedPrice(ctx context.Context, patientID uint64, priceFen int64) int64
}

// NewBookings returns the booking use cases. A completed checkup is told
// to events' subscribers (Events.OnBookingCompleted).
//
// bus carries "these slot groups' seats changed" between instances (Watch
// listens), so that a patient's own booking shows in their next listing
// whichever instance serves it.
func NewBookings(db *model.DB, out *notify.Outbox, limiter KV, bus Bus, care *CareRules, prices Pricer, events *Events, cfg BookingConfig, now func() time.Time) *Bookings {
	if cfg.WindowDays == 0 {
		cfg.WindowDays = 30
	}
	if cfg.CutoffHour == 0 {
		cfg.CutoffHour = 18
	}
	if cfg.RatePerMinute == 0 {
		cfg.RatePerMinute = 30
	}
	if now == nil {
		now = time.Now
	}
	s := &Bookings{db: db, out: out, limiter: limiter, bus: bus, care: care, prices: prices, events: events, cfg: cfg, now: now}
	s.changed = coord.NewCoalescer(seatsChangedDelay, func(groups []string) {
		payload, _ := json.Marshal(groups)
		_ = s.bus.Publish(context.Background(), seatsTopic, payload)
	})
	return s
}

// seatsTopic carries the slot groups whose seats changed; seatsChangedDelay
// gathers a burst of bookings into one message.
const (
	seatsTopic        = "booking.seats"
	seatsChangedDelay = 5 * time.Millisecond
)

// seatsChanged forgets this instance's listings of the slots' groups at
// once and tells the other instances (within seatsChangedDelay).
func (s *Bookings) seatsChanged(ctx context.Context, slotIDs ...uint64) {
	for _, id := range slotIDs {
		sl, err := s.slot(ctx, id)
		if err != nil {
			continue // gone: nothing listed
		}
		s.forgetListings(sl.Group)
		s.changed.Add(sl.Group)
	}
}

// allGroups stands for every slot group (a day closed or reopened).
const allGroups = "*"

// forgetListings moves the group (or every group) to a new listing number:
// the cached listings under the old number are not read again and expire
// by themselves, so a booking costs no scan of the cache.
func (s *Bookings) forgetListings(group string) { s.listingGen(group).Add(1) }

// listingGen is group's listing number.
func (s *Bookings) listingGen(group string) *atomic.Uint64 {
	g, _ := s.gens.LoadOrStore(group, new(atomic.Uint64))
	return g.(*atomic.Uint64)
}

// allListingsChanged forgets every listing here and on the other instances.
func (s *Bookings) allListingsChanged() {
	s.forgetListings(allGroups)
	s.changed.Add(allGroups)
}

// Watch forgets the listings other instances report changed, until ctx
// ends.
func (s *Bookings) Watch(ctx context.Context) error {
	return listen(ctx, s.bus, seatsTopic, func(payload []byte) {
		var groups []string
		if json.Unmarshal(payload, &groups) == nil {
			for _, g := range groups {
				s.forgetListings(g)
			}
		}
	})
}

// Config returns the booking rules.
func (s *Bookings) Config() BookingConfig { return s.cfg }

// Packages lists the active packages in display order.
func (s *Bookings) Packages(ctx context.Context) ([]model.Package, error) {
	var out []model.Package
	err := s.db.Conn(ctx).Where("active = ?", true).Order("sort_order, id").Find(&out).Error
	return out, err
}

// Package returns an active package.
func (s *Bookings) Package(ctx context.Context, id uint64) (*model.Package, error) {
	if v, ok := s.cache.get(fmt.Sprintf("pkg:%d", id)); ok {
		p := v.(model.Package)
		return &p, nil
	}
	var p model.Package
	if err := s.db.Conn(ctx).Where("id = ? AND active = ?", id, true).Take(&p).Error; err != nil {
		return nil, model.NotFound(err)
	}
	s.cache.put(fmt.Sprintf("pkg:%d", id), p, 5*time.Second)
	return &p, nil
}

// slot reads a slot for the booking rules. Its seats are not read here:
// the conditional update decides them, so a slightly old copy is fine.
func (s *Bookings) slot(ctx context.Context, id uint64) (*model.Slot, error) {
	if v, ok := s.cache.get(fmt.Sprintf("slot:%d", id)); ok {
		sl := v.(model.Slot)
		return &sl, nil
	}
	var sl model.Slot
	if err := s.db.Conn(ctx).Where("id = ?", id).Take(&sl).Error; err != nil {
		return nil, model.NotFound(err)
	}
	s.cache.put(fmt.Sprintf("slot:%d", id), sl, 5*time.Second)
	return &sl, nil
}

// dayClosed reports whether date is a closed day (cached for seconds).
func (s *Bookings) dayClosed(ctx context.Context, date string) (bool, error) {
	key := "closed:" + date
	if v, ok := s.cache.get(key); ok {
		return v.(bool), nil
	}
	n, err := model.Count(s.db.Conn(ctx).Model(&model.ClosedDay{}).Where("date = ?", date))
	if err != nil {
		return false, fmt.Errorf("is %s closed: %w", date, err)
	}
	s.cache.put(key, n > 0, 5*time.Second)
	return n > 0, nil
}

// ErrBadRange says a date range is malformed or too long.
var ErrBadRange = model.NewError(model.KindInvalid, "invalid_range", "日期范围不正确（YYYY-MM-DD，最多 31 天）")

// Slots lists a package's bookable slots between from and to (inclusive),
// from today within the booking window.
func (s *Bookings) Slots(ctx context.Context, packageID uint64, from, to string) ([]model.Slot, error) {
	pkg, err := s.Package(ctx, packageID)
	if err != nil {
		return nil, err
	}
	now := s.now().In(model.Shanghai)
	today := now.Format(time.DateOnly)
	last := now.AddDate(0, 0, s.cfg.WindowDays).Format(time.DateOnly)
	if from == "" {
		from = today
	}
	if to == "" {
		to = now.AddDate(0, 0, 13).Format(time.DateOnly)
	}
	f, err1 := time.Parse(time.DateOnly, from)
	t, err2 := time.Parse(time.DateOnly, to)
	if err1 != nil || err2 != nil || t.Before(f) || t.Sub(f) > 31*24*time.Hour {
		return nil, ErrBadRange
	}
	from, to = maxStr(from, today), minStr(to, last)
	key := fmt.Sprintf("slots:%s:%d.%d:%s:%s", pkg.Group, s.listingGen(pkg.Group).Load(), s.listingGen(allGroups).Load(), from, to)
	if v, ok := s.cache.get(key); ok {
		return s.bookable(v.([]model.Slot), now), nil
	}
	var out []model.Slot
	err = s.db.Conn(ctx).Where("slot_group = ? AND date >= ? AND date <= ? AND closed = ?", pkg.Group, from, to, false).
		Where("date NOT IN (?)", s.db.Conn(ctx).Model(&model.ClosedDay{}).Select("date")).
		Order("date, start").Find(&out).Error
	if err != nil {
		return nil, err
	}
	// Others' bookings may take up to a second to show in a listing (a
	// booking or cancellation drops its group's listings on every instance
	// at once: seatsChanged); booking itself decides on the database's count.
	s.cache.put(key, out, time.Second)
	return s.bookable(out, now), nil
}

// bookable drops slots past their cut-off (today's, and tomorrow's after 18:00).
func (s *Bookings) bookable(all []model.Slot, now time.Time) []model.Slot {
	kept := make([]model.Slot, 0, len(all))
	for _, sl := range all {
		if now.Before(model.CutOff(sl.Date, s.cfg.CutoffHour)) {
			kept = append(kept, sl)
		}
	}
	return kept
}

func maxStr(a, b string) string {
	if a > b {
		return a
	}
	return b
}

func minStr(a, b string) string {
	if a < b {
		return a
	}
	return b
}

// BookInput is a booking request.
type BookInput struct {
	PackageID      uint64
	SlotID         uint64
	FamilyMemberID *uint64
	IdempotencyKey string
	// CouponID applies one of the patient's coupons to the price.
	CouponID *uint64
}

// person is who the checkup is for.
type person struct {
	key       string
	gender    string
	birthDate *time.Time
	familyID  *uint64
}

// person is who comes: patientID themself, or the family member of theirs.
func (s *Bookings) person(ctx context.Context, patientID uint64, familyID *uint64, pkg *model.Package) (person, error) {
	if familyID == nil && pkg != nil && (pkg.Gender == "any" || pkg.Gender == "") && pkg.MinAge == 0 && pkg.MaxAge == 0 {
		// No limits to check: the caller is who they are.
		return person{key: fmt.Sprintf("p:%d", patientID)}, nil
	}
	if familyID != nil {
		var m model.FamilyMember
		if err := s.db.Conn(ctx).Where("id = ? AND owner_id = ?", *familyID, patientID).Take(&m).Error; err != nil {
			return person{}, model.NotFound(err)
		}
		return person{key: fmt.Sprintf("f:%d", m.ID), gender: m.Gender, birthDate: m.BirthDate, familyID: &m.ID}, nil
	}
	var pt model.Patient
	if err := s.db.Conn(ctx).Select("id", "gender", "birth_date").Where("id = ?", patientID).Take(&pt).Error; err != nil {
		return person{}, model.NotFound(err)
	}
	return person{key: fmt.Sprintf("p:%d", pt.ID), gender: pt.Gender, birthDate: pt.BirthDate}, nil
}

func ageOn(birth time.Time, day time.Time) int {
	age := day.Year() - birth.Year()
	if day.Month() < birth.Month() || (day.Month() == birth.Month() && day.Day() < birth.UTC().Day()) {
		age--
	}
	return age
}

// checkRules applies the package's and the calendar's rules to a slot.
// Patients book until the cut-off the evening before; the front desk
// (desk) books a walk-in or a caller until the slot ends.
func (s *Bookings) checkRules(ctx context.Context, pkg *model.Package, sl *model.Slot, who person, desk bool) error {
	now := s.now().In(model.Shanghai)
	if sl.Group != pkg.Group {
		return ErrSlotMismatch
	}
	if sl.Closed {
		return ErrSlotClosed
	}
	closed, err := s.dayClosed(ctx, sl.Date)
	if err != nil {
		return err
	}
	if closed {
		return ErrSlotClosed
	}
	switch {
	case desk && !now.Before(sl.EndsAt()):
		return ErrSlotOver
	case !desk && !now.Before(model.CutOff(sl.Date, s.cfg.CutoffHour)):
		return ErrPastCutoff
	}
	if sl.Date > now.AddDate(0, 0, s.cfg.WindowDays).Format(time.DateOnly) {
		return ErrOutsideWindow
	}
	if pkg.Gender != "any" && pkg.Gender != "" {
		if who.gender == "unknown" || who.gender == "" {
			return ErrProfileMissing
		}
		if who.gender != pkg.Gender {
			return ErrGenderLimit
		}
	}
	if pkg.MinAge > 0 || pkg.MaxAge > 0 {
		if who.birthDate == nil {
			return ErrProfileMissing
		}
		day, _ := time.Parse(time.DateOnly, sl.Date)
		age := ageOn(*who.birthDate, day)
		if (pkg.MinAge > 0 && age < pkg.MinAge) || (pkg.MaxAge > 0 && age > pkg.MaxAge) {
			return ErrAgeLimit
		}
	}
	return nil
}

const codeAlphabet = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ" // no 0/O, 1/I

func newBookingCode() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = codeAlphabet[int(b[i])%len(codeAlphabet)]
	}
	return string(b)
}

// Book takes a seat. The same idempotency key again returns the same
// booking without taking a second seat (created is then false).
func (s *Bookings) Book(ctx context.Context, p Principal, in BookInput) (*model.Booking, bool, error) {
	if !p.IsPatient() {
		return nil, false, model.ErrForbidden
	}
	if ok, _, err := s.limiter.Allow(ctx, fmt.Sprintf("booking:%d", p.ID), s.cfg.RatePerMinute, time.Minute); err == nil && !ok {
		return nil, false, model.ErrTooMany.WithMessage("预约操作过于频繁，请稍后再试")
	}
	return s.book(ctx, p.ID, in, false)
}

// book books for patientID under the patient's rules or, with desk, the
// front desk's (checkRules); everything else is the same: the person's
// limits, the price, the idempotency key, the notices in the transaction.
func (s *Bookings) book(ctx context.Context, patientID uint64, in BookInput, desk bool) (*model.Booking, bool, error) {
	in.IdempotencyKey = strings.TrimSpace(in.IdempotencyKey)
	if in.IdempotencyKey == "" || len(in.IdempotencyKey) > 64 {
		return nil, false, ErrIdemKeyMissing
	}
	pkg, err := s.Package(ctx, in.PackageID)
	if err != nil {
		return nil, false, err
	}
	slp, err := s.slot(ctx, in.SlotID)
	if err != nil {
		return nil, false, err
	}
	sl := *slp
	who, err := s.person(ctx, patientID, in.FamilyMemberID, pkg)
	if err != nil {
		return nil, false, err
	}
	if err := s.checkRules(ctx, pkg, &sl, who, desk); err != nil {
		return nil, false, err
	}
	rules := s.care.Current(ctx)
	price := pkg.PriceFen
	if s.prices != nil {
		price = s.prices.DiscountedPrice(ctx, patientID, price)
	}
	var coupon model.Coupon
	if in.CouponID != nil {
		err := s.db.Conn(ctx).Where("id = ? AND patient_id = ? AND status = ? AND expires_at > ?", *in.CouponID, patientID, model.CouponUnused, s.now().UTC()).Take(&coupon).Error
		if err != nil {
			return nil, false, ErrCouponUnusable
		}
		price = max(0, price-coupon.ValueFen)
	}
	for attempt := 0; attempt < 3; attempt++ {
		b := model.Booking{
			Code: newBookingCode(), PatientID: patientID, FamilyMemberID: who.familyID, PersonKey: who.key, ActiveDay: &sl.Date,
			PackageID: pkg.ID, SlotID: sl.ID, Date: sl.Date, Status: model.BookingBooked, PriceFen: price,
			IdempotencyKey: in.IdempotencyKey,
		}
		err = s.db.InTx(ctx, func(ctx context.Context) error {
			db := s.db.Conn(ctx)
			// The booking and its notices first, the seat last: the hot
			// slot's row lock is then held only from the conditional update
			// to the commit, not across the inserts.
			if err := db.Create(&b).Error; err != nil {
				return err
			}
			if err := s.notifyBooked(ctx, &b, pkg, &sl, rules, notify.ReasonBookingConfirmed); err != nil {
				return err
			}
			if in.CouponID != nil {
				used := db.Model(&model.Coupon{}).Where("id = ? AND status = ?", coupon.ID, model.CouponUnused).
					Updates(map[string]any{"status": model.CouponUsed, "booking_id": b.ID})
				if used.Error != nil {
					return used.Error
				}
				if used.RowsAffected == 0 {
					return ErrCouponUnusable // used by a racing booking
				}
			}
			return takeSeat(db, sl.ID)
		})
		if err == nil {
			s.out.Wake(ctx)
			s.seatsChanged(ctx, sl.ID)
			return &b, true, nil
		}
		if !model.IsDuplicate(err) {
			if errors.Is(err, ErrSlotFull) {
				// A full slot may still be a replay of a booking this key made.
				if b, rerr := s.replay(ctx, patientID, in); b != nil || rerr != nil {
					return b, false, rerr
				}
				closed, cerr := model.Count(s.db.Conn(ctx).Model(&model.Slot{}).Where("id = ? AND closed = ?", sl.ID, true))
				if cerr != nil {
					return nil, false, fmt.Errorf("book slot %d: %w", sl.ID, cerr)
				}
				if closed > 0 {
					return nil, false, ErrSlotClosed
				}
			}
			return nil, false, fmt.Errorf("book slot %d: %w", sl.ID, err)
		}
		// Which unique key? A replay of this request, another active booking
		// that day, or (rarely) a booking code already taken.
		if b, rerr := s.replay(ctx, patientID, in); b != nil || rerr != nil {
			return b, false, rerr
		}
		n, cerr := model.Count(s.db.Conn(ctx).Model(&model.Booking{}).Where("person_key = ? AND active_day = ?", who.key, sl.Date))
		if cerr != nil {
			return nil, false, fmt.Errorf("book slot %d: %w", sl.ID, cerr)
		}
		if n > 0 {
			return nil, false, ErrDuplicateBooking
		}
	}
	return nil, false, fmt.Errorf("book slot %d: %w", sl.ID, err)
}

// replay returns the booking an earlier request with this key made.
func (s *Bookings) replay(ctx context.Context, patientID uint64, in BookInput) (*model.Booking, error) {
	var b model.Booking
	err := s.db.Conn(ctx).Where("patient_id = ? AND idempotency_key = ?", patientID, in.IdempotencyKey).Take(&b).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if b.SlotID != in.SlotID || b.PackageID != in.PackageID {
		return nil, ErrIdemKeyReused
	}
	return &b, nil
}

// notifyBooked writes, in the booking's transaction, the patient's notice of
// this change and the reminder due the day before the checkup.
func (s *Bookings) notifyBooked(ctx context.Context, b *model.Booking, pkg *model.Package, sl *model.Slot, rules CareSettings, reason string) error {
	params := map[string]string{"package": pkg.Name, "time": sl.StartsAt().Format(time.RFC3339), "title": "体检预约", "note": "预约号 " + b.Code}
	page := fmt.Sprintf("pages/booking/detail?id=%d", b.ID)
	occurrence := fmt.Sprintf("booking-%d-%s-%s", b.ID, sl.Date, sl.Start)
	h, m := 18, 0
	if t, err := time.Parse("15:04", rules.ReminderTime); err == nil {
		h, m = t.Hour(), t.Minute()
	}
	day, _ := time.ParseInLocation(time.DateOnly, sl.Date, model.Shanghai)
	remindAt := day.AddDate(0, 0, -1).Add(time.Duration(h)*time.Hour + time.Duration(m)*time.Minute)
	if remindAt.Before(s.now()) {
		remindAt = s.now()
	}
	reminder := map[string]string{"package": pkg.Name, "time": params["time"], "title": "明日体检提醒", "note": "请空腹，携带身份证"}
	// One statement for both rows: the booking transaction stays short.
	return s.out.EnqueueMany(ctx, []notify.Notice{
		{PatientID: b.PatientID, Reason: reason, Occurrence: occurrence, Params: params, Page: page},
		{PatientID: b.PatientID, Reason: notify.ReasonCheckupReminder, Occurrence: occurrence, Params: reminder, DueAt: remindAt, Page: page},
	})
}

// cancelReminders stops the pending reminders of a booking.
func (s *Bookings) cancelReminders(ctx context.Context, b *model.Booking) error {
	return s.out.WithdrawEvery(ctx, b.PatientID, notify.ReasonCheckupReminder, fmt.Sprintf("booking-%d-", b.ID), "预约已取消或改约")
}

// List returns the caller's bookings (their own and their family's), newest first.
func (s *Bookings) List(ctx context.Context, p Principal) ([]model.Booking, error) {
	var out []model.Booking
	err := s.db.Conn(ctx).Where("patient_id = ?", p.ID).Order("date DESC, id DESC").Limit(200).Find(&out).Error
	return out, err
}

// Get returns one of the caller's bookings.
func (s *Bookings) Get(ctx context.Context, p Principal, id uint64) (*model.Booking, error) {
	var b model.Booking
	if err := s.db.Conn(ctx).Where("id = ? AND patient_id = ?", id, p.ID).Take(&b).Error; err != nil {
		return nil, model.NotFound(err)
	}
	return &b, nil
}

// Cancel gives the seat back, until the cut-off.
func (s *Bookings) Cancel(ctx context.Context, p Principal, id uint64) (*model.Booking, error) {
	b, err := s.Get(ctx, p, id)
	if err != nil {
		return nil, err
	}
	if !b.CanChange(s.now(), s.cfg.CutoffHour) {
		return nil, ErrNotChangeable
	}
	if err := s.db.InTx(ctx, func(ctx context.Context) error { return s.cancelTx(ctx, b, "预约号 "+b.Code, true) }); err != nil {
		return nil, fmt.Errorf("cancel booking %d: %w", id, err)
	}
	s.out.Wake(ctx)
	s.seatsChanged(ctx, b.SlotID)
	return s.Get(ctx, p, id)
}

// ErrDayHasBookings: closing a day that still has bookings needs the
// request to cancel them.
var ErrDayHasBookings = model.NewError(model.KindConflict, "day_has_bookings", "该日仍有预约，请先处理，或选择同时取消这些预约并通知患者")

// CloseDay closes a day (a holiday): its slots take no new booking from
// this moment. Bookings already made on it are refused (ErrDayHasBookings,
// with their count) unless cancel is set: then each is cancelled in the same
// transaction, its seat and coupon return and its patient is told. It
// returns the closed day and how many bookings were cancelled.
func (s *Bookings) CloseDay(ctx context.Context, by Principal, date, reason string, cancel bool) (*model.ClosedDay, int, error) {
	if err := by.must(ActScheduleManage); err != nil {
		return nil, 0, err
	}
	if _, err := time.Parse(time.DateOnly, date); err != nil {
		return nil, 0, ErrBadSchedule
	}
	reason = model.Truncate(strings.TrimSpace(reason), 60)
	day := model.ClosedDay{Date: date, Reason: reason}
	cancelled := 0
	err := s.db.InTx(ctx, func(ctx context.Context) error {
		db := s.db.Conn(ctx)
		cancelled = 0
		// Closing the slots first makes it take effect at once: the seat
		// update refuses closed slots whatever a cache says, and on MySQL a
		// booking racing this waits for the slot rows and then finds them closed.
		if err := db.Model(&model.Slot{}).Where("date = ?", date).Update("closed", true).Error; err != nil {
			return fmt.Errorf("close slots of %s: %w", date, err)
		}
		var open []model.Booking
		if err := db.Where("date = ? AND status = ?", date, model.BookingBooked).Order("id").Find(&open).Error; err != nil {
			return fmt.Errorf("bookings of %s: %w", date, err)
		}
		if len(open) > 0 && !cancel {
			return ErrDayHasBookings.WithMessage("该日仍有 %d 个预约，请先处理，或选择同时取消这些预约并通知患者", len(open)).
				WithDetails(map[string]any{"bookings": len(open)})
		}
		note := "医院当日停诊，请改约其他日期"
		if reason != "" {
			note = "因" + reason + "停诊，请改约其他日期"
		}
		for i := range open {
			if err := s.cancelTx(ctx, &open[i], note, true); err != nil {
				return err
			}
			cancelled++
		}
		return db.Clauses(clause.OnConflict{UpdateAll: true}).Create(&day).Error
	})
	if err != nil {
		return nil, 0, fmt.Errorf("close day %s: %w", date, err)
	}
	s.cache.forget("closed:" + date)
	s.allListingsChanged()
	s.out.Wake(ctx)
	return &day, cancelled, nil
}

// OpenDay reopens a closed day; this process forgets what it cached of the
// day and its slots, so the day takes bookings here at once.
func (s *Bookings) OpenDay(ctx context.Context, by Principal, date string) error {
	if err := by.must(ActScheduleManage); err != nil {
		return err
	}
	var ids []uint64
	err := s.db.InTx(ctx, func(ctx context.Context) error {
		if err := s.db.Conn(ctx).Where("date = ?", date).Delete(&model.ClosedDay{}).Error; err != nil {
			return err
		}
		if err := s.db.Conn(ctx).Model(&model.Slot{}).Where("date = ?", date).Pluck("id", &ids).Error; err != nil {
			return err
		}
		return s.db.Conn(ctx).Model(&model.Slot{}).Where("date = ?", date).Update("closed", false).Error
	})
	s.cache.forget("closed:" + date)
	for _, id := range ids {
		s.cache.forget(fmt.Sprintf("slot:%d", id))
	}
	s.allListingsChanged()
	if err != nil {
		return fmt.Errorf("open day %s: %w", date, err)
	}
	return nil
}

// cancelTx cancels booking b inside the caller's transaction: the seat and a
// coupon used on it return, its reminders stop and, when tell is set, the
// patient is told (note says why). ErrNotChangeable when b is no longer
// booked. Cancelling, closing a day, merging and erasing all go through it.
func (s *Bookings) cancelTx(ctx context.Context, b *model.Booking, note string, tell bool) error {
	db := s.db.Conn(ctx)
	res := db.Model(&model.Booking{}).Where("id = ? AND status = ?", b.ID, model.BookingBooked).
		Updates(map[string]any{"status": model.BookingCancelled, "active_day": nil, "cancelled_at": s.now().UTC()})
	if res.Error != nil {
		return fmt.Errorf("cancel booking %d: %w", b.ID, res.Error)
	}
	if res.RowsAffected == 0 {
		return ErrNotChangeable // changed meanwhile
	}
	if err := returnSeat(db, b.SlotID); err != nil {
		return fmt.Errorf("return seat of booking %d: %w", b.ID, err)
	}
	if err := s.cancelReminders(ctx, b); err != nil {
		return fmt.Errorf("cancel reminders of booking %d: %w", b.ID, err)
	}
	// A coupon used on this booking can be used again.
	if err := db.Model(&model.Coupon{}).Where("booking_id = ? AND status = ?", b.ID, model.CouponUsed).
		Updates(map[string]any{"status": model.CouponUnused, "booking_id": nil}).Error; err != nil {
		return fmt.Errorf("return coupon of booking %d: %w", b.ID, err)
	}
	if !tell {
		return nil
	}
	var pkg model.Package
	if err := db.Where("id = ?", b.PackageID).Take(&pkg).Error; err != nil {
		return fmt.Errorf("package of booking %d: %w", b.ID, err)
	}
	var sl model.Slot
	if err := db.Where("id = ?", b.SlotID).Take(&sl).Error; err != nil {
		return fmt.Errorf("slot of booking %d: %w", b.ID, err)
	}
	_, err := s.out.Enqueue(ctx, notify.Notice{PatientID: b.PatientID, Reason: notify.ReasonBookingCancelled,
		Occurrence: fmt.Sprintf("booking-%d", b.ID),
		Params:     map[string]string{"package": pkg.Name, "time": sl.StartsAt().Format(time.RFC3339), "title": "预约已取消", "note": note}})
	return err
}

// Reschedule moves a booking to another slot of its package, until the
// cut-off: the new seat is taken and the old one given back atomically.
func (s *Bookings) Reschedule(ctx context.Context, p Principal, id, slotID uint64) (*model.Booking, error) {
	b, err := s.Get(ctx, p, id)
	if err != nil {
		return nil, err
	}
	if !b.CanChange(s.now(), s.cfg.CutoffHour) {
		return nil, ErrNotChangeable
	}
	if err := s.move(ctx, b, slotID, false); err != nil {
		return nil, err
	}
	return s.Get(ctx, p, id)
}

// move moves booked b to slotID under the patient's rules or, with desk,
// the front desk's; b is updated.
func (s *Bookings) move(ctx context.Context, b *model.Booking, slotID uint64, desk bool) error {
	if slotID == b.SlotID {
		return nil
	}
	oldSlot := b.SlotID
	var pkg model.Package
	if err := s.db.Conn(ctx).Where("id = ?", b.PackageID).Take(&pkg).Error; err != nil {
		return err
	}
	var sl model.Slot
	if err := s.db.Conn(ctx).Where("id = ?", slotID).Take(&sl).Error; err != nil {
		return model.NotFound(err)
	}
	who, err := s.person(ctx, b.PatientID, b.FamilyMemberID, &pkg)
	if err != nil {
		return err
	}
	if err := s.checkRules(ctx, &pkg, &sl, who, desk); err != nil {
		return err
	}
	rules := s.care.Current(ctx)
	err = s.db.InTx(ctx, func(ctx context.Context) error {
		db := s.db.Conn(ctx)
		if err := takeSeat(db, sl.ID); err != nil {
			return err
		}
		res := db.Model(&model.Booking{}).Where("id = ? AND patient_id = ? AND status = ? AND slot_id = ?", b.ID, b.PatientID, model.BookingBooked, oldSlot).
			Updates(map[string]any{"slot_id": sl.ID, "date": sl.Date, "active_day": sl.Date})
		if res.Error != nil {
			if model.IsDuplicate(res.Error) {
				return ErrDuplicateBooking
			}
			return res.Error
		}
		if res.RowsAffected == 0 {
			return ErrNotChangeable
		}
		if err := returnSeat(db, oldSlot); err != nil {
			return err
		}
		if err := s.cancelReminders(ctx, b); err != nil {
			return err
		}
		moved := *b
		moved.SlotID, moved.Date = sl.ID, sl.Date
		return s.notifyBooked(ctx, &moved, &pkg, &sl, rules, notify.ReasonBookingChanged)
	})
	if err != nil {
		return fmt.Errorf("move booking %d to slot %d: %w", b.ID, slotID, err)
	}
	b.SlotID, b.Date = sl.ID, sl.Date
	s.out.Wake(ctx)
	s.seatsChanged(ctx, oldSlot, slotID)
	return nil
}

// PackageItems decodes a package's item list.
func PackageItems(p *model.Package) []string {
	var items []string
	_ = json.Unmarshal([]byte(p.Items), &items)
	if items == nil {
		items = []string{}
	}
	return items
}

// BookingView is a booking with its slot and package, for display.
type BookingView struct {
	model.Booking
	Start, End  string
	PackageName string
	// PersonName and Phone (masked) are who comes: filled for the front desk.
	PersonName, Phone string
}

// Views joins bookings with their slots and packages: from the short-lived
// cache, and what it lacks in one query per table.
func (s *Bookings) Views(ctx context.Context, bs []model.Booking) ([]BookingView, error) {
	slots, names := map[uint64]model.Slot{}, map[uint64]string{}
	var missSlots, missPkgs []uint64
	for _, b := range bs {
		if v, ok := s.cache.get(fmt.Sprintf("slot:%d", b.SlotID)); ok {
			slots[b.SlotID] = v.(model.Slot)
		} else {
			missSlots = append(missSlots, b.SlotID)
		}
		if v, ok := s.cache.get(fmt.Sprintf("pkgname:%d", b.PackageID)); ok {
			names[b.PackageID] = v.(string)
		} else {
			missPkgs = append(missPkgs, b.PackageID)
		}
	}
	if len(missSlots) > 0 {
		var rows []model.Slot
		if err := s.db.Conn(ctx).Where("id IN ?", missSlots).Find(&rows).Error; err != nil {
			return nil, err
		}
		for _, sl := range rows {
			slots[sl.ID] = sl
			s.cache.put(fmt.Sprintf("slot:%d", sl.ID), sl, 5*time.Second)
		}
	}
	if len(missPkgs) > 0 {
		var rows []model.Package
		if err := s.db.Conn(ctx).Select("id", "name").Where("id IN ?", missPkgs).Find(&rows).Error; err != nil {
			return nil, err
		}
		for _, p := range rows {
			names[p.ID] = p.Name
			s.cache.put(fmt.Sprintf("pkgname:%d", p.ID), p.Name, time.Minute)
		}
	}
	out := make([]BookingView, 0, len(bs))
	for _, b := range bs {
		out = append(out, BookingView{Booking: b, Start: slots[b.SlotID].Start, End: slots[b.SlotID].End, PackageName: names[b.PackageID]})
	}
	return out, nil
}

// takeSeat takes one seat of an open slot by one conditional update: its
// affected-row count decides, so concurrent bookings never overbook.
func takeSeat(db *gorm.DB, slotID uint64) error {
	res := db.Model(&model.Slot{}).Where("id = ? AND booked < capacity AND closed = ?", slotID, false).
		Update("booked", gorm.Expr("booked + 1"))
	if res.Error != nil {
		return res.Error
	}
	if res.RowsAffected == 0 {
		return ErrSlotFull
	}
	return nil
}

// returnSeat gives a seat back (cancellation, the old slot of a reschedule).
func returnSeat(db *gorm.DB, slotID uint64) error {
	return db.Model(&model.Slot{}).Where("id = ? AND booked > 0", slotID).Update("booked", gorm.Expr("booked - 1")).Error
}
