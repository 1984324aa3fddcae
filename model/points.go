package model

import "time"

// Level is a membership level: reached at a growth value, with benefits.
type Level struct {
	ID                uint64 `gorm:"primaryKey"`
	Name              string `gorm:"size:32"`
	Growth            int64  // growth value from which the level applies
	DiscountPct       int    // package discount, percent (0–50)
	FreeConsults      int    // free consultations a month
	BookingWindowDays int    // booking window (0: the default)
	CreatedAt         time.Time
	UpdatedAt         time.Time
}

// PointsAccount is a patient's balance and growth, changed only by
// conditional updates in the same transaction as the ledger entry.
type PointsAccount struct {
	PatientID uint64 `gorm:"primaryKey"`
	Balance   int64
	Growth    int64 // from paid checkups only, never from redemptions
	UpdatedAt time.Time
}

// Points ledger entry kinds.
const (
	PointsEarn   = "earn"
	PointsRedeem = "redeem"
	PointsExpire = "expire"
	PointsAdjust = "adjust"
	PointsRefund = "refund"
	// PointsMerge records (with amount 0) that another record's balance and
	// ledger joined this one.
	PointsMerge = "merge"
)

// PointsEntry is one append-only ledger line. Remaining tracks how much of
// an earn (or positive adjustment) is still unspent, oldest first, so that
// expiry takes exactly what is left of each grant.
type PointsEntry struct {
	ID             uint64 `gorm:"primaryKey"`
	PatientID      uint64 `gorm:"index:idx_points_patient,priority:1"`
	Kind           string `gorm:"size:8"`
	Amount         int64  // signed
	Remaining      int64
	Reason         string     `gorm:"size:128"`
	Ref            string     `gorm:"size:64"`
	IdempotencyKey string     `gorm:"size:96;uniqueIndex"`
	ExpiresAt      *time.Time `gorm:"index"`
	CreatedBy      uint64
	CreatedAt      time.Time `gorm:"index:idx_points_patient,priority:2"`
}

// Reward kinds.
const (
	RewardItem   = "item"
	RewardCoupon = "coupon"
)

// Reward is an item or coupon in the points catalogue, with a stock.
type Reward struct {
	ID             uint64 `gorm:"primaryKey"`
	Name           string `gorm:"size:64"`
	Kind           string `gorm:"size:8"`
	CostPoints     int64
	Stock          int
	CouponValueFen int64
	Active         bool
	CreatedAt      time.Time
	UpdatedAt      time.Time
}

// Coupon statuses.
const (
	CouponUnused = "unused"
	CouponUsed   = "used"
)

// Coupon is a redeemed coupon, usable once on a booking's price.
type Coupon struct {
	ID        uint64 `gorm:"primaryKey"`
	PatientID uint64 `gorm:"index"`
	RewardID  uint64
	Code      string `gorm:"size:16;uniqueIndex"`
	// RedeemKey is the ledger key of the redemption that made it.
	RedeemKey string `gorm:"size:96;index"`
	ValueFen  int64
	Status    string `gorm:"size:8"`
	BookingID *uint64
	ExpiresAt time.Time
	CreatedAt time.Time
	UpdatedAt time.Time
}
