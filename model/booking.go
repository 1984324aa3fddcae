package model

import "time"

// Package is a checkup package (体检套餐).
type Package struct {
	ID          uint64 `gorm:"primaryKey"`
	Name        string `gorm:"size:64"`
	Description string `gorm:"type:text"`
	Items       string `gorm:"type:text"` // JSON list of item names
	PriceFen    int64
	Gender      string `gorm:"size:8"` // any, male, female
	MinAge      int    // 0: no lower bound
	MaxAge      int    // 0: no upper bound
	// Group names the schedule the package books into; "" is the center's.
	Group     string `gorm:"column:slot_group;size:32"`
	Active    bool
	SortOrder int
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Slot is a time period of one day with limited capacity. Booked is changed
// only by conditional updates ("booked < capacity"), never read-then-write.
type Slot struct {
	ID        uint64 `gorm:"primaryKey"`
	Date      string `gorm:"size:10;uniqueIndex:idx_slot_period,priority:2;index"` // YYYY-MM-DD, Asia/Shanghai
	Start     string `gorm:"size:5;uniqueIndex:idx_slot_period,priority:3"`        // HH:MM
	End       string `gorm:"size:5"`
	Group     string `gorm:"column:slot_group;size:32;uniqueIndex:idx_slot_period,priority:1"`
	Capacity  int
	Booked    int
	Closed    bool
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Remaining is the number of free seats.
func (s *Slot) Remaining() int {
	if s.Closed {
		return 0
	}
	return max(0, s.Capacity-s.Booked)
}

// StartsAt is the slot's start in Asia/Shanghai.
func (s *Slot) StartsAt() time.Time {
	t, _ := time.ParseInLocation("2006-01-02 15:04", s.Date+" "+s.Start, Shanghai)
	return t
}

// EndsAt is the slot's end in Asia/Shanghai.
func (s *Slot) EndsAt() time.Time {
	t, _ := time.ParseInLocation("2006-01-02 15:04", s.Date+" "+s.End, Shanghai)
	return t
}

// Booking statuses.
const (
	BookingBooked    = "booked"
	BookingCheckedIn = "checked_in"
	BookingCompleted = "completed"
	BookingCancelled = "cancelled"
	BookingNoShow    = "no_show"
)

// Booking is a person's place in a slot for a package. ActiveDay is the
// date while the booking holds a place, NULL once cancelled or missed: a
// unique index on (PersonKey, ActiveDay) allows one active booking per
// person per day.
type Booking struct {
	ID             uint64  `gorm:"primaryKey"`
	Code           string  `gorm:"size:12;uniqueIndex"`
	PatientID      uint64  `gorm:"index;uniqueIndex:idx_booking_idem,priority:1"`
	FamilyMemberID *uint64 `gorm:"index"`
	PersonKey      string  `gorm:"size:24;uniqueIndex:idx_booking_person_day,priority:1"`
	ActiveDay      *string `gorm:"size:10;uniqueIndex:idx_booking_person_day,priority:2"`
	PackageID      uint64  `gorm:"index"`
	SlotID         uint64  `gorm:"index"`
	Date           string  `gorm:"size:10;index"`
	Status         string  `gorm:"size:16;index"`
	PriceFen       int64
	IdempotencyKey string `gorm:"size:64;uniqueIndex:idx_booking_idem,priority:2"`
	CheckedInAt    *time.Time
	CompletedAt    *time.Time
	CancelledAt    *time.Time
	CreatedAt      time.Time
	// UpdatedAt is indexed: the visit summaries follow the bookings changed
	// since their watermark.
	UpdatedAt time.Time `gorm:"index"`
}

// CutOff is the last moment a booking on date may be made, cancelled or
// moved: cutoffHour o'clock (Asia/Shanghai) the day before.
func CutOff(date string, cutoffHour int) time.Time {
	d, _ := time.ParseInLocation(time.DateOnly, date, Shanghai)
	return d.AddDate(0, 0, -1).Add(time.Duration(cutoffHour) * time.Hour)
}

// CanChange reports whether the patient may still cancel or move b.
func (b *Booking) CanChange(now time.Time, cutoffHour int) bool {
	return b.Status == BookingBooked && now.Before(CutOff(b.Date, cutoffHour))
}

// BookingSteps are the front desk's moves: the status each may start from.
var BookingSteps = map[string]string{
	BookingCheckedIn: BookingBooked,
	BookingCompleted: BookingCheckedIn,
	BookingNoShow:    BookingBooked,
}

// BookingUndoable are the statuses the front desk may take back, to
// "booked", on the booking's own day (a mistaken check-in or no-show).
var BookingUndoable = map[string]bool{BookingCheckedIn: true, BookingNoShow: true}

// DayBegun reports whether the booking's day has begun at now (Asia/Shanghai).
func (b *Booking) DayBegun(now time.Time) bool {
	return b.Date <= now.In(Shanghai).Format(time.DateOnly)
}

// IsToday reports whether the booking is for today (Asia/Shanghai).
func (b *Booking) IsToday(now time.Time) bool {
	return b.Date == now.In(Shanghai).Format(time.DateOnly)
}

// ClosedDay is a day the center does not take checkups (a holiday).
type ClosedDay struct {
	Date      string `gorm:"primaryKey;size:10"`
	Reason    string `gorm:"size:64"`
	CreatedAt time.Time
}
