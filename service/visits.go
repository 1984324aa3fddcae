package service

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"careloop/coord"
	"careloop/model"
)

// Visits keeps the patient visit summaries (model.PatientVisit) that
// segments count on: after each refresh they reflect every booking changed
// up to its start. A refresh recomputes the patients whose bookings changed
// since the watermark (less an overlap for transactions that committed
// late); without a watermark it rebuilds every summary, a range of patients
// at a time. One instance refreshes at a time; Run refreshes every Every,
// and a segment count refreshes first (incrementally, a few rows).
type Visits struct {
	db     *model.DB
	locker coord.Locker
	log    *slog.Logger
	now    func() time.Time
	// Every is how often Run refreshes.
	Every time.Duration
}

// NewVisits returns the visit summaries.
func NewVisits(db *model.DB, locker coord.Locker, log *slog.Logger, now func() time.Time) *Visits {
	if now == nil {
		now = time.Now
	}
	return &Visits{db: db, locker: locker, log: log, now: now, Every: 5 * time.Second}
}

const (
	visitsWatermark = "visits.watermark"
	// visitsOverlap re-reads this much before the watermark: a transaction
	// that stamped its booking before the last refresh but committed after
	// it is seen by the next one.
	visitsOverlap = time.Minute
	visitsBatch   = 5000
)

// Run refreshes until ctx ends.
func (s *Visits) Run(ctx context.Context) error {
	d := newDoorbell()
	return d.serve(ctx, s.Every, s.log, "visit summaries", func(ctx context.Context) (bool, error) { return false, s.Refresh(ctx) })
}

// Refresh brings the summaries up to date (another instance refreshing:
// nothing to do).
func (s *Visits) Refresh(ctx context.Context) error {
	return alone(ctx, s.locker, "visits", 10*time.Minute, func() error { return s.refresh(ctx) })
}

func (s *Visits) refresh(ctx context.Context) error {
	started := s.now().UTC()
	var st model.Setting
	if err := s.db.Conn(ctx).Where("`key` = ?", visitsWatermark).Limit(1).Find(&st).Error; err != nil {
		return fmt.Errorf("visits watermark: %w", err)
	}
	if st.Value == "" {
		if err := s.rebuild(ctx); err != nil {
			return err
		}
	} else {
		wm, err := time.Parse(time.RFC3339Nano, st.Value)
		if err != nil {
			return fmt.Errorf("visits watermark %q: %w", st.Value, err)
		}
		// By the updated_at index alone (ordering by patient would make
		// MySQL walk every booking by patient to find the few changed).
		var ids []uint64
		if err := s.db.Conn(ctx).Model(&model.Booking{}).Distinct("patient_id").Where("updated_at >= ? AND updated_at <= ?", wm.Add(-visitsOverlap), started).
			Pluck("patient_id", &ids).Error; err != nil {
			return fmt.Errorf("changed bookings: %w", err)
		}
		for start := 0; start < len(ids); start += visitsBatch {
			if err := recomputeVisits(ctx, s.db.Conn(ctx), ids[start:min(start+visitsBatch, len(ids))], s.now()); err != nil {
				return err
			}
		}
	}
	return s.db.Conn(ctx).Clauses(clause.OnConflict{UpdateAll: true}).
		Create(&model.Setting{Key: visitsWatermark, Value: started.Format(time.RFC3339Nano), UpdatedAt: started}).Error
}

// rebuild recomputes every patient's summary, a range of ids at a time.
func (s *Visits) rebuild(ctx context.Context) error {
	var maxID uint64
	if err := s.db.Conn(ctx).Model(&model.Booking{}).Select("COALESCE(MAX(patient_id), 0)").Scan(&maxID).Error; err != nil {
		return fmt.Errorf("bookings: %w", err)
	}
	const span = 20000
	for from := uint64(0); from <= maxID; from += span {
		if err := s.db.InTx(ctx, func(ctx context.Context) error {
			conn := s.db.Conn(ctx)
			if err := conn.Where("patient_id > ? AND patient_id <= ?", from, from+span).Delete(&model.PatientVisit{}).Error; err != nil {
				return err
			}
			rows, err := visitRows(conn.Where("patient_id > ? AND patient_id <= ?", from, from+span), s.now())
			if err != nil || len(rows) == 0 {
				return err
			}
			return conn.CreateInBatches(&rows, 1000).Error
		}); err != nil {
			return fmt.Errorf("rebuild visits from patient %d: %w", from, err)
		}
	}
	return nil
}

// visitRows sums up the bookings q selects, per patient.
func visitRows(q *gorm.DB, now time.Time) ([]model.PatientVisit, error) {
	var rows []model.PatientVisit
	err := q.Model(&model.Booking{}).Select(
		"patient_id, MAX(CASE WHEN status = ? THEN date END) AS last_completed, SUM(CASE WHEN status = ? THEN 1 ELSE 0 END) AS completed, "+
			"SUM(CASE WHEN status = ? THEN 1 ELSE 0 END) AS no_shows, MAX(CASE WHEN status IN ? THEN date END) AS upcoming_until",
		model.BookingCompleted, model.BookingCompleted, model.BookingNoShow, []string{model.BookingBooked, model.BookingCheckedIn}).
		Group("patient_id").Scan(&rows).Error
	for i := range rows {
		rows[i].UpdatedAt = now.UTC()
	}
	return rows, err
}

// recomputeVisits recomputes the summaries of patients ids from their
// bookings (a patient left without bookings loses the row).
func recomputeVisits(_ context.Context, conn *gorm.DB, ids []uint64, now time.Time) error {
	rows, err := visitRows(conn.Where("patient_id IN ?", ids), now)
	if err != nil {
		return fmt.Errorf("visits of %d patients: %w", len(ids), err)
	}
	if len(rows) > 0 {
		if err := conn.Clauses(clause.OnConflict{UpdateAll: true}).CreateInBatches(&rows, 1000).Error; err != nil {
			return fmt.Errorf("save visits: %w", err)
		}
	}
	if len(rows) < len(ids) {
		have := make(map[uint64]bool, len(rows))
		for _, r := range rows {
			have[r.PatientID] = true
		}
		var gone []uint64
		for _, id := range ids {
			if !have[id] {
				gone = append(gone, id)
			}
		}
		if err := conn.Where("patient_id IN ?", gone).Delete(&model.PatientVisit{}).Error; err != nil {
			return fmt.Errorf("drop visits: %w", err)
		}
	}
	return nil
}
