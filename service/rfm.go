package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"careloop/model"
)

// RFM scores every patient over the trailing 24 months of completed
// checkups — R days since the last, F how many, M what they paid after
// coupons — 1 to 5 each, and places them in the value tiers of the
// customer pyramid (白金, 黄金, 铁, 铅). Each run is a snapshot (its
// thresholds, every patient's scores and tier), so tiers can be followed
// over time and from run to run (the migration matrix).
type RFM struct {
	db    *model.DB
	audit *Audit
	log   *slog.Logger
	now   func() time.Time
	wake  doorbell
	// Lease is how long a worker keeps a run; a run whose worker died is
	// taken over and started again.
	Lease time.Duration
}

// NewRFM returns the RFM scoring use cases.
func NewRFM(db *model.DB, audit *Audit, log *slog.Logger, now func() time.Time) *RFM {
	if now == nil {
		now = time.Now
	}
	return &RFM{db: db, audit: audit, log: log, now: now, wake: newDoorbell(), Lease: 10 * time.Minute}
}

// RFMConfig holds the editable parts: the fixed thresholds used when the
// population is too small (or too uniform) for stable quintiles, and the
// tier cut-offs on the sum of the three scores (3–15).
type RFMConfig struct {
	WindowMonths  int `json:"window_months"`
	MinPopulation int `json:"min_population"`
	// Fixed thresholds for scores 5, 4, 3, 2 (1 below them): recency at
	// most so many days, frequency and monetary at least so much.
	RecencyDays [4]int   `json:"recency_days"`
	Frequency   [4]int   `json:"frequency"`
	MonetaryFen [4]int64 `json:"monetary_fen"`
	// Tiers: platinum from this sum, gold, iron; lead below.
	Platinum int `json:"platinum"`
	Gold     int `json:"gold"`
	Iron     int `json:"iron"`
}

// DefaultRFMConfig is the documented default: a checkup center's patient
// comes about once a year, so recency is scored in quarters of a year and
// frequency by checkups in two years; the tiers split the score sum so that
// 白金 needs top marks in most of R, F and M.
var DefaultRFMConfig = RFMConfig{
	WindowMonths: 24, MinPopulation: 200,
	RecencyDays: [4]int{90, 180, 365, 540}, Frequency: [4]int{5, 4, 3, 2}, MonetaryFen: [4]int64{500000, 300000, 150000, 80000},
	Platinum: 13, Gold: 10, Iron: 7,
}

const rfmConfigKey = "rfm.config"

// RFMThresholds are what a run used, per dimension: the cut-points for
// scores 5, 4, 3, 2 and whether they are quintiles or the fixed ones.
type RFMThresholds struct {
	Config      RFMConfig         `json:"config"`
	RecencyDays [4]int            `json:"recency_days"`
	Frequency   [4]int            `json:"frequency"`
	MonetaryFen [4]int64          `json:"monetary_fen"`
	Method      map[string]string `json:"method"` // r, f, m: "quintile" or "fixed"
}

// ErrRFMRunning: a run is already queued or running.
var ErrRFMRunning = model.NewError(model.KindConflict, "rfm_running", "已有一次评分在进行中，请等它结束")

// Config returns the RFM settings (the default until changed).
func (s *RFM) config(ctx context.Context) (RFMConfig, error) {
	cfg := DefaultRFMConfig
	var st model.Setting
	err := s.db.Conn(ctx).Where("`key` = ?", rfmConfigKey).Take(&st).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return cfg, nil
	}
	if err != nil {
		return cfg, fmt.Errorf("rfm config: %w", err)
	}
	return cfg, json.Unmarshal([]byte(st.Value), &cfg)
}

// Start queues a run.
func (s *RFM) Start(ctx context.Context, by Principal) (*model.RFMRun, error) {
	if err := by.must(ActRFM); err != nil {
		return nil, err
	}
	run, err := s.queue(ctx, by.ID)
	if err != nil {
		return nil, err
	}
	if err := s.audit.Record(ctx, by, "rfm.run", nil, fmt.Sprintf("run %d", run.ID)); err != nil {
		return nil, err
	}
	return run, nil
}

func (s *RFM) queue(ctx context.Context, staffID uint64) (*model.RFMRun, error) {
	var n int64
	if err := s.db.Conn(ctx).Model(&model.RFMRun{}).Where("status IN ?", []string{model.RFMQueued, model.RFMRunning}).Count(&n).Error; err != nil {
		return nil, err
	}
	if n > 0 {
		return nil, ErrRFMRunning
	}
	run := model.RFMRun{Status: model.RFMQueued, StaffID: staffID, CreatedAt: s.now().UTC()}
	if err := s.db.Conn(ctx).Create(&run).Error; err != nil {
		return nil, fmt.Errorf("queue rfm run: %w", err)
	}
	s.wake.ring()
	return &run, nil
}

// Nightly queues the night's run at 02:00 (a care-rule tick).
func (s *RFM) Nightly(ctx context.Context, now time.Time) error {
	local := now.In(model.Shanghai)
	if local.Hour() != 2 || local.Minute() != 0 {
		return nil
	}
	_, err := s.queue(ctx, 0)
	if errors.Is(err, ErrRFMRunning) {
		return nil
	}
	return err
}

// Get returns a run.
func (s *RFM) Get(ctx context.Context, by Principal, id uint64) (*model.RFMRun, error) {
	if err := by.must(ActRFM); err != nil {
		return nil, err
	}
	var run model.RFMRun
	if err := s.db.Conn(ctx).Where("id = ?", id).Take(&run).Error; err != nil {
		return nil, model.NotFound(err)
	}
	return &run, nil
}

// Runs lists the runs, newest first (the tier distribution over time).
func (s *RFM) Runs(ctx context.Context, by Principal, cursor string, limit int) ([]model.RFMRun, string, error) {
	if err := by.must(ActRFM); err != nil {
		return nil, "", err
	}
	return page(s.db.Conn(ctx).Model(&model.RFMRun{}), "id", cursor, limit, func(r model.RFMRun) uint64 { return r.ID })
}

// Run works on queued runs until ctx ends.
func (s *RFM) Run(ctx context.Context) error {
	return s.wake.serve(ctx, 5*time.Second, s.log, "rfm run", s.RunOnce)
}

// RunOnce claims a queued run (or one whose worker died) and scores
// everyone. It reports whether there was one.
func (s *RFM) RunOnce(ctx context.Context) (bool, error) {
	now := s.now().UTC()
	var run model.RFMRun
	err := s.db.Conn(ctx).Where("status = ? OR (status = ? AND lease_until < ?)", model.RFMQueued, model.RFMRunning, now).Order("id").Take(&run).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("next rfm run: %w", err)
	}
	token := randomHex(8)
	res := s.db.Conn(ctx).Model(&model.RFMRun{}).Where("id = ? AND status = ? AND claim_token = ?", run.ID, run.Status, run.ClaimToken).
		Updates(map[string]any{"status": model.RFMRunning, "claim_token": token, "lease_until": now.Add(s.Lease), "as_of": now})
	if res.Error != nil {
		return false, fmt.Errorf("claim rfm run %d: %w", run.ID, res.Error)
	}
	if res.RowsAffected == 0 {
		return true, nil
	}
	if err := s.score(ctx, run.ID, now); err != nil {
		if uerr := s.db.Conn(context.WithoutCancel(ctx)).Model(&model.RFMRun{}).Where("id = ? AND claim_token = ?", run.ID, token).
			Updates(map[string]any{"status": model.RFMFailed, "last_error": model.Truncate(err.Error(), 500)}).Error; uerr != nil {
			s.log.Error("rfm: fail run", "run", run.ID, "err", uerr)
		}
		return true, err
	}
	return true, nil
}

// rfmRow is one patient's figures over the window (Last as the database
// gives an aggregate time: SQLite as text).
type rfmRow struct {
	PatientID uint64
	Last      string
	F         int
	M         int64
	last      time.Time
}

// parseDBTime reads a time as MySQL (through database/sql) or SQLite
// answers it.
func parseDBTime(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02 15:04:05.999999999-07:00", "2006-01-02 15:04:05.999999999", time.DateTime} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("unreadable time %q", s)
}

// score computes and stores run id's scores, tiers and migration.
func (s *RFM) score(ctx context.Context, id uint64, asOf time.Time) error {
	cfg, err := s.config(ctx)
	if err != nil {
		return err
	}
	db := s.db.Conn(ctx)
	// A run taken over starts again.
	if err := db.Where("run_id = ?", id).Delete(&model.RFMScore{}).Error; err != nil {
		return fmt.Errorf("clear run %d: %w", id, err)
	}
	since := asOf.AddDate(0, -cfg.WindowMonths, 0)
	var rows []rfmRow
	// Coupons used on a booking lower what was paid for it.
	if err := db.Table("bookings AS b").
		Select("b.patient_id AS patient_id, MAX(b.completed_at) AS last, COUNT(*) AS f, SUM(b.price_fen - COALESCE(c.value_fen, 0)) AS m").
		Joins("LEFT JOIN coupons c ON c.booking_id = b.id AND c.status = ?", model.CouponUsed).
		Where("b.status = ? AND b.completed_at >= ?", model.BookingCompleted, since).
		Group("b.patient_id").Scan(&rows).Error; err != nil {
		return fmt.Errorf("rfm figures: %w", err)
	}
	for i := range rows {
		if rows[i].last, err = parseDBTime(rows[i].Last); err != nil {
			return err
		}
	}
	th := thresholds(cfg, rows, asOf)
	scores := make([]model.RFMScore, len(rows))
	tiers := map[string]int{model.TierPlatinum: 0, model.TierGold: 0, model.TierIron: 0, model.TierLead: 0}
	for i, r := range rows {
		days := int(asOf.Sub(r.last).Hours() / 24)
		sc := model.RFMScore{RunID: id, PatientID: r.PatientID, R: days, F: r.F, M: r.M,
			RScore: scoreLow(days, th.RecencyDays), FScore: scoreHigh(int64(r.F), toInt64(th.Frequency)), MScore: scoreHigh(r.M, th.MonetaryFen)}
		sc.Tier = tierOf(cfg, int(sc.RScore+sc.FScore+sc.MScore))
		tiers[sc.Tier]++
		scores[i] = sc
	}
	if err := db.CreateInBatches(scores, 2000).Error; err != nil {
		return fmt.Errorf("store scores of run %d: %w", id, err)
	}
	var prev model.RFMRun
	err = db.Where("status = ? AND id < ?", model.RFMDone, id).Order("id DESC").Take(&prev).Error
	var prevID *uint64
	migration := map[string]map[string]int{}
	if err == nil {
		prevID = &prev.ID
		if migration, err = s.migration(ctx, prev.ID, id); err != nil {
			return err
		}
	} else if !errors.Is(err, gorm.ErrRecordNotFound) {
		return fmt.Errorf("previous run: %w", err)
	}
	thJSON, _ := json.Marshal(th)
	tiersJSON, _ := json.Marshal(tiers)
	migJSON, _ := json.Marshal(migration)
	done := s.now().UTC()
	return db.Model(&model.RFMRun{}).Where("id = ?", id).Updates(map[string]any{"status": model.RFMDone, "thresholds": string(thJSON),
		"tiers": string(tiersJSON), "migration": string(migJSON), "prev_run_id": prevID, "patients": len(rows),
		"quintiles": th.Method["r"] == "quintile" || th.Method["m"] == "quintile", "finished_at": done, "lease_until": nil}).Error
}

// migration counts, from run prev to run cur, how many patients went from
// each tier to each other ("none": not scored in that run).
func (s *RFM) migration(ctx context.Context, prev, cur uint64) (map[string]map[string]int, error) {
	type cell struct {
		From, To string
		N        int
	}
	var cells, gone []cell
	db := s.db.Conn(ctx)
	if err := db.Table("rfm_scores AS c").Select("COALESCE(p.tier, 'none') AS `from`, c.tier AS `to`, COUNT(*) AS n").
		Joins("LEFT JOIN rfm_scores p ON p.patient_id = c.patient_id AND p.run_id = ?", prev).
		Where("c.run_id = ?", cur).Group("p.tier, c.tier").Scan(&cells).Error; err != nil {
		return nil, fmt.Errorf("migration: %w", err)
	}
	if err := db.Table("rfm_scores AS p").Select("p.tier AS `from`, 'none' AS `to`, COUNT(*) AS n").
		Joins("LEFT JOIN rfm_scores c ON c.patient_id = p.patient_id AND c.run_id = ?", cur).
		Where("p.run_id = ? AND c.patient_id IS NULL", prev).Group("p.tier").Scan(&gone).Error; err != nil {
		return nil, fmt.Errorf("migration: %w", err)
	}
	out := map[string]map[string]int{}
	for _, c := range append(cells, gone...) {
		if out[c.From] == nil {
			out[c.From] = map[string]int{}
		}
		out[c.From][c.To] += c.N
	}
	return out, nil
}

// thresholds chooses each dimension's cut-points: quintiles of this run's
// population when it is large enough and they tell people apart (four
// distinct cut-points), else the configured fixed ones.
func thresholds(cfg RFMConfig, rows []rfmRow, asOf time.Time) RFMThresholds {
	th := RFMThresholds{Config: cfg, RecencyDays: cfg.RecencyDays, Frequency: cfg.Frequency, MonetaryFen: cfg.MonetaryFen,
		Method: map[string]string{"r": "fixed", "f": "fixed", "m": "fixed"}}
	if len(rows) < cfg.MinPopulation || len(rows) < 5 {
		return th
	}
	days := make([]int64, len(rows))
	freq := make([]int64, len(rows))
	money := make([]int64, len(rows))
	for i, r := range rows {
		days[i], freq[i], money[i] = int64(asOf.Sub(r.last).Hours()/24), int64(r.F), r.M
	}
	// Recency: fewer days is better; the best fifth scores 5.
	if q, ok := quintiles(days, false); ok {
		th.RecencyDays = [4]int{int(q[0]), int(q[1]), int(q[2]), int(q[3])}
		th.Method["r"] = "quintile"
	}
	if q, ok := quintiles(freq, true); ok {
		th.Frequency = [4]int{int(q[0]), int(q[1]), int(q[2]), int(q[3])}
		th.Method["f"] = "quintile"
	}
	if q, ok := quintiles(money, true); ok {
		th.MonetaryFen = q
		th.Method["m"] = "quintile"
	}
	return th
}

// quintiles returns the cut-points for scores 5, 4, 3, 2: for higher-is-
// better values the lowest value of each upper fifth, for lower-is-better
// the highest of each lower fifth; ok is false when they are not four
// distinct values (too many ties to tell fifths apart).
func quintiles(vals []int64, higherBetter bool) ([4]int64, bool) {
	sorted := append([]int64(nil), vals...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	n := len(sorted)
	var q [4]int64
	for k := 0; k < 4; k++ {
		if higherBetter {
			q[k] = sorted[n*(4-k)/5] // 80th, 60th, 40th, 20th percentiles
		} else {
			q[k] = sorted[max(0, n*(k+1)/5-1)] // 20th, 40th, 60th, 80th
		}
	}
	for k := 1; k < 4; k++ {
		if q[k] == q[k-1] {
			return q, false
		}
	}
	return q, true
}

// scoreLow scores a lower-is-better value against cut-points for 5, 4, 3, 2.
func scoreLow(v int, cut [4]int) int8 {
	for k, c := range cut {
		if v <= c {
			return int8(5 - k)
		}
	}
	return 1
}

// scoreHigh scores a higher-is-better value against cut-points for 5, 4, 3, 2.
func scoreHigh(v int64, cut [4]int64) int8 {
	for k, c := range cut {
		if v >= c {
			return int8(5 - k)
		}
	}
	return 1
}

func toInt64(a [4]int) [4]int64 { return [4]int64{int64(a[0]), int64(a[1]), int64(a[2]), int64(a[3])} }

func tierOf(cfg RFMConfig, sum int) string {
	switch {
	case sum >= cfg.Platinum:
		return model.TierPlatinum
	case sum >= cfg.Gold:
		return model.TierGold
	case sum >= cfg.Iron:
		return model.TierIron
	}
	return model.TierLead
}

// RFMOf is a patient's latest scores and their tier in every run (for the
// 360): nil when never scored.
type RFMOf struct {
	Latest  model.RFMScore
	AsOf    time.Time
	History []RFMTierAt
}

// RFMTierAt is a patient's tier in one run.
type RFMTierAt struct {
	RunID uint64
	AsOf  time.Time
	Tier  string
}

// rfmOf returns patient id's RFM for the 360 (nil when never scored); the
// 360's own read check covers it.
func rfmOf(ctx context.Context, db *model.DB, id uint64) (*RFMOf, error) {
	var hist []struct {
		model.RFMScore
		AsOf time.Time
	}
	if err := db.Conn(ctx).Table("rfm_scores AS s").Select("s.*, r.as_of AS as_of").Joins("JOIN rfm_runs r ON r.id = s.run_id").
		Where("s.patient_id = ? AND r.status = ?", id, model.RFMDone).Order("s.run_id DESC").Limit(24).Scan(&hist).Error; err != nil {
		return nil, fmt.Errorf("rfm of patient %d: %w", id, err)
	}
	if len(hist) == 0 {
		return nil, nil
	}
	out := &RFMOf{Latest: hist[0].RFMScore, AsOf: hist[0].AsOf}
	for _, h := range hist {
		out.History = append(out.History, RFMTierAt{RunID: h.RunID, AsOf: h.AsOf, Tier: h.Tier})
	}
	return out, nil
}

// ErrRFMConfig refuses settings that would not score sensibly.
var ErrRFMConfig = model.NewError(model.KindInvalid, "invalid_rfm_config", "评分设置不正确")

// Config returns the RFM settings (the default until changed).
func (s *RFM) Config(ctx context.Context, by Principal) (RFMConfig, error) {
	if err := by.must(ActRFM); err != nil {
		return RFMConfig{}, err
	}
	return s.config(ctx)
}

// SetConfig changes the RFM settings; the next run uses them.
func (s *RFM) SetConfig(ctx context.Context, by Principal, c RFMConfig) (RFMConfig, error) {
	if err := by.must(ActRFM); err != nil {
		return c, err
	}
	bad := func(msg string) error { return ErrRFMConfig.WithMessage("%s", msg) }
	switch {
	case c.WindowMonths < 1 || c.WindowMonths > 60:
		return c, bad("统计窗口为 1 到 60 个月")
	case c.MinPopulation < 5:
		return c, bad("按五分位评分的最少人数不能少于 5")
	case !(c.Platinum > c.Gold && c.Gold > c.Iron && c.Iron > 3 && c.Platinum <= 15):
		return c, bad("分层总分须满足：15 ≥ 白金 > 黄金 > 铁 > 3")
	}
	for k := 0; k < 4; k++ {
		if c.RecencyDays[k] <= 0 || c.Frequency[k] < 1 || c.MonetaryFen[k] < 0 {
			return c, bad("固定阈值须为正数")
		}
		if k > 0 && (c.RecencyDays[k] <= c.RecencyDays[k-1] || c.Frequency[k] >= c.Frequency[k-1] || c.MonetaryFen[k] >= c.MonetaryFen[k-1]) {
			return c, bad("固定阈值须按 5、4、3、2 分依次排列：天数递增，次数与金额递减")
		}
	}
	raw, _ := json.Marshal(c)
	if err := s.db.Conn(ctx).Clauses(clause.OnConflict{Columns: []clause.Column{{Name: "key"}}, DoUpdates: clause.AssignmentColumns([]string{"value", "updated_by", "updated_at"})}).
		Create(&model.Setting{Key: rfmConfigKey, Value: string(raw), UpdatedBy: by.ID}).Error; err != nil {
		return c, fmt.Errorf("save rfm config: %w", err)
	}
	return c, s.audit.Record(ctx, by, "rfm.config", nil, string(raw))
}
