package model

// Bound is the documented range of a number a client sends (a price, an
// amount, a capacity): checked where it enters, so that nothing stored is
// out of range and no sum of them overflows.
type Bound struct {
	Field    string
	Min, Max int64
}

// The bounds of careloop's numbers (also in api/openapi.yaml).
var (
	BoundPriceFen     = Bound{"price_fen", 0, 100_000_000} // ¥1,000,000
	BoundCouponFen    = Bound{"coupon_value_fen", 1, 10_000_000}
	BoundCostPoints   = Bound{"cost_points", 1, 10_000_000}
	BoundStock        = Bound{"stock", 0, 1_000_000}
	BoundAdjust       = Bound{"amount", -1_000_000, 1_000_000}
	BoundMinAge       = Bound{"min_age", 0, 150}
	BoundMaxAge       = Bound{"max_age", 0, 150}
	BoundSortOrder    = Bound{"sort_order", -1_000_000, 1_000_000}
	BoundCapacity     = Bound{"capacity", 1, 10_000}
	BoundGrowth       = Bound{"growth", 0, MaxPoints}
	BoundDiscountPct  = Bound{"discount_pct", 0, 50}
	BoundFreeConsults = Bound{"free_consults_per_month", 0, 100}
	BoundWindowDays   = Bound{"booking_window_days", 0, 365}
	BoundRating       = Bound{"rating", 1, 5}
	BoundPageSize     = Bound{"limit", 1, 100}
)

// MaxPoints caps a patient's balance and growth: far beyond any real
// account, far below where int64 sums could overflow.
const MaxPoints = 1_000_000_000

// ErrOutOfRange is a number outside its documented bounds.
var ErrOutOfRange = NewError(KindRule, "out_of_range", "数值超出允许范围")

// Check answers ErrOutOfRange, naming the field and its range, when v is
// outside b.
func (b Bound) Check(v int64) error {
	if v >= b.Min && v <= b.Max {
		return nil
	}
	return ErrOutOfRange.WithMessage("字段 %s 应在 %d 到 %d 之间", b.Field, b.Min, b.Max).
		WithDetails(map[string]any{"field": b.Field, "min": b.Min, "max": b.Max})
}

// CheckAll checks each value against its bound, in order.
func CheckAll(pairs ...BoundValue) error {
	for _, p := range pairs {
		if err := p.Bound.Check(p.V); err != nil {
			return err
		}
	}
	return nil
}

// BoundValue pairs a value with its bound.
type BoundValue struct {
	Bound Bound
	V     int64
}
