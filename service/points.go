package service

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"careloop/model"
	"careloop/notify"
)

// Errors of points.
var (
	ErrInsufficientPoints = model.NewError(model.KindConflict, "insufficient_points", "积分不足")
	ErrOutOfStock         = model.NewError(model.KindConflict, "out_of_stock", "该礼品已兑完")
	ErrReasonRequired     = model.NewError(model.KindRule, "reason_required", "调整积分需要填写原因")
	ErrCouponUnusable     = model.NewError(model.KindRule, "coupon_unusable", "该优惠券不可用（已使用、已过期或不属于您）")
)

// PointsConfig tunes earning and expiry.
type PointsConfig struct {
	PointsPerYuan int64 // points per yuan paid (default 1)
	SurveyPoints  int64 // points for a completed survey (default 50)
	// ExpiryYears: points expire at the end of the year this many years
	// after they were earned (default 1: the end of next year).
	ExpiryYears int
	// CouponDays is how long a redeemed coupon stays valid (default 90).
	CouponDays int
}

// Points is membership and the points ledger.
type Points struct {
	db    *model.DB
	out   *notify.Outbox
	audit *Audit
	cfg   PointsConfig
	now   func() time.Time

	cache ttlCache // the level table, for pricing
}

// NewPoints returns the membership and points use cases.
//
// A completed checkup earns points (Events.OnBookingCompleted).
func NewPoints(db *model.DB, out *notify.Outbox, audit *Audit, events *Events, cfg PointsConfig, now func() time.Time) *Points {
	if cfg.PointsPerYuan == 0 {
		cfg.PointsPerYuan = 1
	}
	if cfg.SurveyPoints == 0 {
		cfg.SurveyPoints = 50
	}
	if cfg.ExpiryYears == 0 {
		cfg.ExpiryYears = 1
	}
	if cfg.CouponDays == 0 {
		cfg.CouponDays = 90
	}
	if now == nil {
		now = time.Now
	}
	p := &Points{db: db, out: out, audit: audit, cfg: cfg, now: now}
	events.OnBookingCompleted(p.EarnForBooking)
	return p
}

// expiry is the end of the year ExpiryYears after t (Asia/Shanghai).
func (s *Points) expiry(t time.Time) time.Time {
	y := t.In(model.Shanghai).Year() + s.cfg.ExpiryYears
	return time.Date(y, 12, 31, 23, 59, 59, 0, model.Shanghai)
}

// grant adds points (and growth) under a unique key, in the caller's
// transaction if any. A key seen before changes nothing (false).
func (s *Points) grant(ctx context.Context, patientID uint64, amount, growth int64, kind, reason, ref, key string, by uint64) (bool, error) {
	ok := false
	err := s.db.InTx(ctx, func(ctx context.Context) error {
		db := s.db.Conn(ctx)
		exp := s.expiry(s.now())
		e := model.PointsEntry{PatientID: patientID, Kind: kind, Amount: amount, Remaining: amount, Reason: model.Truncate(reason, 120),
			Ref: ref, IdempotencyKey: key, ExpiresAt: &exp, CreatedBy: by}
		if err := db.Create(&e).Error; err != nil {
			if model.IsDuplicate(err) {
				return nil // already granted
			}
			return err
		}
		ok = true
		acct := model.PointsAccount{PatientID: patientID, Balance: amount, Growth: growth}
		if err := db.Clauses(clause.OnConflict{
			Columns: []clause.Column{{Name: "patient_id"}},
			DoUpdates: clause.Assignments(map[string]any{
				"balance": gorm.Expr("balance + ?", amount), "growth": gorm.Expr("growth + ?", growth), "updated_at": s.now().UTC()}),
		}).Create(&acct).Error; err != nil {
			return fmt.Errorf("grant points to patient %d: %w", patientID, err)
		}
		// Balances stay within MaxPoints (and so far from overflowing):
		// a grant past it is refused whole.
		n, err := model.Count(db.Model(&model.PointsAccount{}).Where("patient_id = ? AND (balance > ? OR growth > ?)", patientID, model.MaxPoints, model.MaxPoints))
		if err != nil {
			return fmt.Errorf("check the balance of patient %d: %w", patientID, err)
		}
		if n > 0 {
			return ErrPointsLimit
		}
		return nil
	})
	return ok, err
}

// ErrPointsLimit: a grant would take a balance past model.MaxPoints.
var ErrPointsLimit = model.NewError(model.KindRule, "points_limit", "积分已达上限，无法继续发放")

// spend takes amount from the balance (never below zero), records the
// entry, and uses up the oldest grants first. The conditional update on the
// account row decides, and serialises spenders of one patient.
func (s *Points) spend(ctx context.Context, patientID uint64, amount int64, kind, reason, ref, key string, by uint64) error {
	db := s.db.Conn(ctx)
	res := db.Model(&model.PointsAccount{}).Where("patient_id = ? AND balance >= ?", patientID, amount).
		Updates(map[string]any{"balance": gorm.Expr("balance - ?", amount), "updated_at": s.now().UTC()})
	if res.Error != nil {
		return res.Error
	}
	if res.RowsAffected == 0 {
		return ErrInsufficientPoints
	}
	if err := db.Create(&model.PointsEntry{PatientID: patientID, Kind: kind, Amount: -amount, Reason: model.Truncate(reason, 120),
		Ref: ref, IdempotencyKey: key, CreatedBy: by}).Error; err != nil {
		return err
	}
	var grants []model.PointsEntry
	if err := db.Where("patient_id = ? AND remaining > 0", patientID).Order("expires_at, id").Find(&grants).Error; err != nil {
		return err
	}
	left := amount
	for _, g := range grants {
		if left == 0 {
			break
		}
		take := min(left, g.Remaining)
		if err := db.Model(&model.PointsEntry{}).Where("id = ?", g.ID).Update("remaining", gorm.Expr("remaining - ?", take)).Error; err != nil {
			return err
		}
		left -= take
	}
	return nil
}

// EarnForBooking credits a completed checkup: points from the amount paid
// (the booking's price after level discount and coupon) and as much growth.
// A second completion event for the same booking earns nothing.
func (s *Points) EarnForBooking(ctx context.Context, b *model.Booking) error {
	yuan := b.PriceFen / 100
	if yuan <= 0 {
		return nil
	}
	_, err := s.grant(ctx, b.PatientID, yuan*s.cfg.PointsPerYuan, yuan, model.PointsEarn, "完成体检", fmt.Sprintf("booking %d", b.ID),
		fmt.Sprintf("booking:%d", b.ID), 0)
	return err
}

// EarnForSurvey credits a completed survey, once per survey response.
func (s *Points) EarnForSurvey(ctx context.Context, patientID, responseID uint64) error {
	_, err := s.grant(ctx, patientID, s.cfg.SurveyPoints, 0, model.PointsEarn, "完成满意度调查", fmt.Sprintf("survey %d", responseID),
		fmt.Sprintf("survey:%d", responseID), 0)
	return err
}

// Adjust changes a balance by hand, with a reason, audited.
func (s *Points) Adjust(ctx context.Context, by Principal, patientID uint64, amount int64, reason string) error {
	if err := by.must(ActPointsManage); err != nil {
		return err
	}
	reason = strings.TrimSpace(reason)
	if reason == "" {
		return ErrReasonRequired
	}
	if amount == 0 {
		return model.ErrInvalid.WithMessage("调整数量不能为 0")
	}
	if err := model.BoundAdjust.Check(amount); err != nil {
		return err
	}
	key := fmt.Sprintf("adjust:%d:%d:%s", patientID, s.now().UnixNano(), newBookingCode())
	return s.db.InTx(ctx, func(ctx context.Context) error {
		if err := model.MustExist(s.db.Conn(ctx).Model(&model.Patient{}).Where("id = ?", patientID), model.ErrNotFound); err != nil {
			return err
		}
		var err error
		if amount > 0 {
			_, err = s.grant(ctx, patientID, amount, 0, model.PointsAdjust, reason, "staff", key, by.ID)
		} else {
			err = s.spend(ctx, patientID, -amount, model.PointsAdjust, reason, "staff", key, by.ID)
		}
		if err != nil {
			return err
		}
		return s.audit.Record(ctx, by, "points.adjust", &patientID, fmt.Sprintf("%+d: %s", amount, reason))
	})
}

// RedeemResult is what a redemption gave.
type RedeemResult struct {
	Reward  model.Reward
	Coupon  *model.Coupon
	Balance int64
	// Replayed: the key had redeemed already; nothing changed now.
	Replayed bool
}

// Redeem exchanges points for a reward: points and stock change together
// or not at all. The same idempotency key again changes nothing.
func (s *Points) Redeem(ctx context.Context, p Principal, rewardID uint64, idemKey string) (*RedeemResult, error) {
	idemKey = strings.TrimSpace(idemKey)
	if idemKey == "" || len(idemKey) > 64 {
		return nil, ErrIdemKeyMissing
	}
	key := fmt.Sprintf("redeem:%d:%s", p.ID, idemKey)
	var reward model.Reward
	if err := s.db.Conn(ctx).Where("id = ? AND active = ?", rewardID, true).Take(&reward).Error; err != nil {
		return nil, model.NotFound(err)
	}
	if done, err := s.redeemed(ctx, key); done || err != nil {
		if err != nil {
			return nil, err
		}
		return s.redeemState(ctx, p, rewardID, key, true)
	}
	err := s.db.InTx(ctx, func(ctx context.Context) error {
		db := s.db.Conn(ctx)
		// Account row first, then the reward row: every redeemer takes the
		// locks in this order, so they cannot deadlock.
		if err := s.spend(ctx, p.ID, reward.CostPoints, model.PointsRedeem, "兑换 "+reward.Name, fmt.Sprintf("reward %d", reward.ID), key, 0); err != nil {
			return err
		}
		res := db.Model(&model.Reward{}).Where("id = ? AND stock > 0 AND active = ?", reward.ID, true).Update("stock", gorm.Expr("stock - 1"))
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected == 0 {
			return ErrOutOfStock
		}
		if reward.Kind == model.RewardCoupon {
			c := model.Coupon{PatientID: p.ID, RewardID: reward.ID, Code: "Q" + newBookingCode(), RedeemKey: key, ValueFen: reward.CouponValueFen,
				Status: model.CouponUnused, ExpiresAt: s.now().AddDate(0, 0, s.cfg.CouponDays).UTC()}
			if err := db.Create(&c).Error; err != nil {
				return err
			}
		}
		return nil
	})
	replayed := false
	if model.IsDuplicate(err) {
		// A concurrent replay of this key won: its redemption stands.
		err, replayed = nil, true
	}
	if err != nil {
		return nil, err
	}
	return s.redeemState(ctx, p, rewardID, key, replayed)
}

// redeemed reports whether the redemption key has been spent.
func (s *Points) redeemed(ctx context.Context, key string) (bool, error) {
	var n int64
	err := s.db.Conn(ctx).Model(&model.PointsEntry{}).Where("idempotency_key = ?", key).Count(&n).Error
	return n > 0, err
}

// redeemState answers a redemption, fresh or replayed, from what is stored
// after it: the reward's stock after the deduction, the coupon it made, the
// balance now. A replay answers like the first time.
func (s *Points) redeemState(ctx context.Context, p Principal, rewardID uint64, key string, replayed bool) (*RedeemResult, error) {
	db := s.db.Conn(ctx)
	out := &RedeemResult{Replayed: replayed}
	if err := db.Where("id = ?", rewardID).Take(&out.Reward).Error; err != nil {
		return nil, fmt.Errorf("redeem: load reward %d: %w", rewardID, model.NotFound(err))
	}
	var c model.Coupon
	err := db.Where("redeem_key = ?", key).Take(&c).Error
	switch {
	case err == nil:
		out.Coupon = &c
	case !errors.Is(err, gorm.ErrRecordNotFound):
		return nil, fmt.Errorf("redeem: load coupon: %w", err)
	}
	var acct model.PointsAccount
	if err := db.Where("patient_id = ?", p.ID).Take(&acct).Error; err != nil && !errors.Is(err, gorm.ErrRecordNotFound) {
		return nil, fmt.Errorf("redeem: load balance: %w", err)
	}
	out.Balance = acct.Balance
	return out, nil
}

// Expire takes away what is left of grants past their expiry, oldest
// first; safe to run on many instances at once (conditional updates and a
// unique key per grant).
func (s *Points) Expire(ctx context.Context, now time.Time) error {
	var due []model.PointsEntry
	if err := s.db.Conn(ctx).Where("remaining > 0 AND expires_at <= ?", now.UTC()).Order("id").Limit(1000).Find(&due).Error; err != nil {
		return err
	}
	for _, g := range due {
		err := s.db.InTx(ctx, func(ctx context.Context) error {
			db := s.db.Conn(ctx)
			res := db.Model(&model.PointsEntry{}).Where("id = ? AND remaining = ?", g.ID, g.Remaining).Update("remaining", 0)
			if res.Error != nil || res.RowsAffected == 0 {
				return res.Error // changed meanwhile: the next run sees it
			}
			if err := db.Create(&model.PointsEntry{PatientID: g.PatientID, Kind: model.PointsExpire, Amount: -g.Remaining,
				Reason: "积分到期", Ref: fmt.Sprintf("entry %d", g.ID), IdempotencyKey: fmt.Sprintf("expire:%d", g.ID)}).Error; err != nil {
				return err
			}
			return db.Model(&model.PointsAccount{}).Where("patient_id = ? AND balance >= ?", g.PatientID, g.Remaining).
				Update("balance", gorm.Expr("balance - ?", g.Remaining)).Error
		})
		if err != nil && !model.IsDuplicate(err) {
			return err
		}
	}
	return nil
}

// ExpiryReminders tells patients, a month ahead, of points about to expire.
func (s *Points) ExpiryReminders(ctx context.Context, now time.Time) error {
	// Grouped here rather than in SQL: SQLite's MIN() of a datetime comes
	// back as text.
	var grants []model.PointsEntry
	err := s.db.Conn(ctx).Select("patient_id", "remaining", "expires_at").
		Where("remaining > 0 AND expires_at > ? AND expires_at <= ?", now.UTC(), now.AddDate(0, 1, 0).UTC()).
		Where("patient_id NOT IN (?)", s.db.Conn(ctx).Model(&model.Patient{}).Select("id").Where("erased_at IS NOT NULL")).
		Order("patient_id, expires_at").Find(&grants).Error
	if err != nil {
		return err
	}
	type sum struct {
		points int64
		first  time.Time
	}
	by := map[uint64]*sum{}
	var order []uint64
	for _, g := range grants {
		if by[g.PatientID] == nil {
			by[g.PatientID] = &sum{first: *g.ExpiresAt}
			order = append(order, g.PatientID)
		}
		by[g.PatientID].points += g.Remaining
	}
	var ns []notify.Notice
	for _, pid := range order {
		day := by[pid].first.In(model.Shanghai).Format(time.DateOnly)
		ns = append(ns, notify.Notice{PatientID: pid, Reason: notify.ReasonPointsExpiry, Occurrence: "expiry-" + day,
			Params: map[string]string{"title": "积分即将到期", "note": fmt.Sprintf("%d 积分将于 %s 到期", by[pid].points, day)}})
	}
	return s.out.EnqueueMany(ctx, ns)
}

// Levels lists the levels by growth.
func (s *Points) Levels(ctx context.Context) ([]model.Level, error) {
	var out []model.Level
	return out, s.db.Conn(ctx).Order("growth, id").Find(&out).Error
}

// SaveLevels replaces the level table.
func (s *Points) SaveLevels(ctx context.Context, by Principal, levels []model.Level) error {
	if err := by.must(ActPointsManage); err != nil {
		return err
	}
	for _, l := range levels {
		if err := model.CheckAll(model.BoundValue{Bound: model.BoundGrowth, V: l.Growth}, model.BoundValue{Bound: model.BoundDiscountPct, V: int64(l.DiscountPct)},
			model.BoundValue{Bound: model.BoundFreeConsults, V: int64(l.FreeConsults)}, model.BoundValue{Bound: model.BoundWindowDays, V: int64(l.BookingWindowDays)}); err != nil {
			return err
		}
		if strings.TrimSpace(l.Name) == "" {
			return model.NewError(model.KindRule, "invalid_level", "等级名称不能为空")
		}
	}
	err := s.db.InTx(ctx, func(ctx context.Context) error {
		if err := s.db.Conn(ctx).Where("1 = 1").Delete(&model.Level{}).Error; err != nil {
			return err
		}
		for _, l := range levels {
			l.ID = 0
			if err := s.db.Conn(ctx).Create(&l).Error; err != nil {
				return err
			}
		}
		return s.audit.Record(ctx, by, "levels.change", nil, fmt.Sprintf("%d levels", len(levels)))
	})
	s.cache.forget("levels") // this process prices with the new table at once
	return err
}

// levelFor picks the highest level whose threshold growth reaches.
func levelFor(levels []model.Level, growth int64) (cur, next *model.Level) {
	for i := range levels {
		if levels[i].Growth <= growth {
			cur = &levels[i]
		} else if next == nil {
			next = &levels[i]
		}
	}
	return cur, next
}

// Summary is a patient's points at a glance.
type Summary struct {
	Balance, Growth int64
	Level, Next     *model.Level
	ExpiringPoints  int64
	ExpiringAt      *time.Time
}

// Summary returns a patient's balance, growth, level and what expires next.
func (s *Points) Summary(ctx context.Context, patientID uint64) (*Summary, error) {
	var acct model.PointsAccount
	if err := s.db.Conn(ctx).Where("patient_id = ?", patientID).Take(&acct).Error; err != nil && !errors.Is(err, gorm.ErrRecordNotFound) {
		return nil, err
	}
	levels, err := s.Levels(ctx)
	if err != nil {
		return nil, err
	}
	out := &Summary{Balance: acct.Balance, Growth: acct.Growth}
	out.Level, out.Next = levelFor(levels, acct.Growth)
	var first model.PointsEntry
	if err := s.db.Conn(ctx).Where("patient_id = ? AND remaining > 0", patientID).Order("expires_at").Take(&first).Error; err == nil {
		out.ExpiringAt = first.ExpiresAt
		if err := s.db.Conn(ctx).Model(&model.PointsEntry{}).Where("patient_id = ? AND remaining > 0 AND expires_at = ?", patientID, first.ExpiresAt).
			Select("COALESCE(SUM(remaining), 0)").Scan(&out.ExpiringPoints).Error; err != nil {
			return nil, fmt.Errorf("expiring points of patient %d: %w", patientID, err)
		}
	}
	return out, nil
}

// DiscountedPrice applies the patient's level discount to a price. It is on
// the booking path: the level table comes from a short cache, and the
// patient's growth is read only when some level gives a discount.
func (s *Points) DiscountedPrice(ctx context.Context, patientID uint64, priceFen int64) int64 {
	levels, err := s.cachedLevels(ctx)
	if err != nil {
		return priceFen
	}
	discounts := false
	for _, l := range levels {
		discounts = discounts || l.DiscountPct > 0
	}
	if !discounts {
		return priceFen
	}
	var growth int64
	if err := s.db.Conn(ctx).Model(&model.PointsAccount{}).Where("patient_id = ?", patientID).Pluck("growth", &growth).Error; err != nil {
		return priceFen
	}
	if cur, _ := levelFor(levels, growth); cur != nil {
		return priceFen * int64(100-cur.DiscountPct) / 100
	}
	return priceFen
}

// cachedLevels is Levels kept for a few seconds (levels change rarely;
// SaveLevels forgets the copy at once).
func (s *Points) cachedLevels(ctx context.Context) ([]model.Level, error) {
	if v, ok := s.cache.get("levels"); ok {
		return v.([]model.Level), nil
	}
	ls, err := s.Levels(ctx)
	if err != nil {
		return nil, err
	}
	s.cache.put("levels", ls, 5*time.Second)
	return ls, nil
}

// Ledger lists a patient's entries, newest first: a patient's own, or any
// patient's for staff who may read points.
func (s *Points) Ledger(ctx context.Context, by Principal, patientID uint64, cursor string, limit int) ([]model.PointsEntry, string, error) {
	if by.IsPatient() {
		patientID = by.ID
	} else if err := by.must(ActPointsRead); err != nil {
		return nil, "", err
	}
	q := s.db.Conn(ctx).Model(&model.PointsEntry{}).Where("patient_id = ?", patientID)
	return page(q, "id", cursor, limit, func(e model.PointsEntry) uint64 { return e.ID })
}

// Rewards lists the rewards on offer; all, the withdrawn ones too, is for
// staff who manage points.
func (s *Points) Rewards(ctx context.Context, by Principal, all bool) ([]model.Reward, error) {
	if all {
		if err := by.must(ActPointsManage); err != nil {
			return nil, err
		}
	}
	q := s.db.Conn(ctx).Order("cost_points, id")
	if !all {
		q = q.Where("active = ?", true)
	}
	var out []model.Reward
	return out, q.Find(&out).Error
}

// SaveReward creates (id 0) or changes a reward.
func (s *Points) SaveReward(ctx context.Context, by Principal, r model.Reward) (*model.Reward, error) {
	if err := by.must(ActPointsManage); err != nil {
		return nil, err
	}
	if err := model.CheckAll(model.BoundValue{Bound: model.BoundCostPoints, V: r.CostPoints}, model.BoundValue{Bound: model.BoundStock, V: int64(r.Stock)}); err != nil {
		return nil, err
	}
	if r.Kind == model.RewardCoupon {
		if err := model.BoundCouponFen.Check(r.CouponValueFen); err != nil {
			return nil, err
		}
	}
	if strings.TrimSpace(r.Name) == "" || (r.Kind != model.RewardItem && r.Kind != model.RewardCoupon) {
		return nil, model.NewError(model.KindRule, "invalid_reward", "礼品设置不正确")
	}
	if r.ID == 0 {
		return &r, s.db.Conn(ctx).Create(&r).Error
	}
	res := s.db.Conn(ctx).Model(&model.Reward{}).Where("id = ?", r.ID).
		Select("name", "kind", "cost_points", "stock", "coupon_value_fen", "active").Updates(&r)
	if res.Error != nil {
		return nil, res.Error
	}
	return &r, nil
}

// Coupons lists a patient's coupons.
func (s *Points) Coupons(ctx context.Context, patientID uint64) ([]model.Coupon, error) {
	var out []model.Coupon
	return out, s.db.Conn(ctx).Where("patient_id = ?", patientID).Order("id DESC").Find(&out).Error
}
