package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
	"unicode/utf8"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"careloop/model"
)

// Holiday is a day of holiday care with its greeting.
type Holiday struct {
	Date  string `json:"date"` // YYYY-MM-DD
	Title string `json:"title"`
	Text  string `json:"text"`
}

// Rules are the care rules' settings, editable by admins.
type Rules struct {
	ReminderTime     string    `json:"reminder_time"`      // the day before a checkup, HH:MM
	SurveyDelayHours int       `json:"survey_delay_hours"` // after a completed checkup
	RecheckMonths    int       `json:"recheck_months"`     // after the last completed checkup
	BirthdayTime     string    `json:"birthday_time"`      // HH:MM on the day
	BirthdayText     string    `json:"birthday_text"`
	HolidayTime      string    `json:"holiday_time"`
	Holidays         []Holiday `json:"holidays"`
}

// DefaultRules: reminders at 18:00 the day before, surveys two hours after,
// re-checks at eleven months, birthdays at 09:00.
func DefaultRules() Rules {
	return Rules{ReminderTime: "18:00", SurveyDelayHours: 2, RecheckMonths: 11, BirthdayTime: "09:00",
		BirthdayText: "祝您生日快乐，身体健康！", HolidayTime: "09:00", Holidays: []Holiday{}}
}

// ErrBadRules says the settings do not make sense.
var ErrBadRules = model.NewError(model.KindRule, "invalid_rules", "规则设置不正确：时间为 HH:MM，日期为 YYYY-MM-DD，间隔为正数")

func clock(s string) (int, int, bool) {
	t, err := time.Parse("15:04", s)
	return t.Hour(), t.Minute(), err == nil
}

// Validate checks the settings.
func (r Rules) Validate() error {
	for _, s := range []string{r.ReminderTime, r.BirthdayTime, r.HolidayTime} {
		if _, _, ok := clock(s); !ok {
			return ErrBadRules
		}
	}
	if r.SurveyDelayHours < 0 || r.SurveyDelayHours > 24*30 || r.RecheckMonths < 1 || r.RecheckMonths > 36 {
		return ErrBadRules
	}
	for _, h := range r.Holidays {
		if _, err := time.Parse(time.DateOnly, h.Date); err != nil || strings.TrimSpace(h.Title) == "" || utf8.RuneCountInString(h.Text) > 200 {
			return ErrBadRules
		}
	}
	return nil
}

const rulesKey = "notify.rules"

// LoadRules reads the care rules (defaults when never saved).
func LoadRules(ctx context.Context, db *model.DB) (Rules, error) {
	var s model.Setting
	err := db.Conn(ctx).Where("`key` = ?", rulesKey).Take(&s).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return DefaultRules(), nil
	}
	if err != nil {
		return Rules{}, err
	}
	r := DefaultRules()
	if err := json.Unmarshal([]byte(s.Value), &r); err != nil {
		return Rules{}, fmt.Errorf("care rules: %w", err)
	}
	return r, nil
}

// SaveRules stores the care rules.
func SaveRules(ctx context.Context, db *model.DB, r Rules, by uint64) error {
	if err := r.Validate(); err != nil {
		return err
	}
	b, _ := json.Marshal(r)
	return db.Conn(ctx).Clauses(clause.OnConflict{UpdateAll: true}).
		Create(&model.Setting{Key: rulesKey, Value: string(b), UpdatedBy: by, UpdatedAt: time.Now()}).Error
}

// EnqueueMany writes many notices at once (a holiday greeting for every
// patient); notices already written are skipped.
func (o *Outbox) EnqueueMany(ctx context.Context, ns []Notice) error {
	rows := make([]model.Notification, 0, len(ns))
	for _, n := range ns {
		row, err := o.row(n)
		if err != nil {
			return err
		}
		rows = append(rows, row)
	}
	if len(rows) == 0 {
		return nil
	}
	return o.db.Conn(ctx).Clauses(clause.OnConflict{DoNothing: true}).CreateInBatches(&rows, 500).Error
}

// Scheduler runs the care rules. Any number of instances may run it at
// once: every notice has a dedupe key per occurrence, so each occurrence
// yields one notification.
type Scheduler struct {
	db    *model.DB
	out   *Outbox
	now   func() time.Time
	log   *slog.Logger
	extra []Rule
}

// Rule is a care rule owned elsewhere (no-shows and re-checks belong to
// booking); it must be safe to run on many instances at once.
type Rule func(ctx context.Context, now time.Time) error

// NewScheduler returns the care-rule scheduler with extra rules.
func NewScheduler(db *model.DB, out *Outbox, now func() time.Time, log *slog.Logger, extra ...Rule) *Scheduler {
	if now == nil {
		now = time.Now
	}
	return &Scheduler{db: db, out: out, now: now, log: log, extra: extra}
}

// Run evaluates the rules every minute until ctx ends.
func (s *Scheduler) Run(ctx context.Context) error {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		if err := s.Tick(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("care rules", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Tick evaluates every rule once.
func (s *Scheduler) Tick(ctx context.Context) error {
	rules, err := LoadRules(ctx, s.db)
	if err != nil {
		return err
	}
	now := s.now().In(model.Shanghai)
	errs := []error{s.birthdays(ctx, rules, now), s.holidays(ctx, rules, now)}
	for _, r := range s.extra {
		errs = append(errs, r(ctx, now))
	}
	return errors.Join(errs...)
}

func after(now time.Time, hhmm string) bool {
	h, m, ok := clock(hhmm)
	return ok && now.Hour()*60+now.Minute() >= h*60+m
}

// birthdays greets patients on their birthday (29 February on 28 February
// in other years).
func (s *Scheduler) birthdays(ctx context.Context, r Rules, now time.Time) error {
	if !after(now, r.BirthdayTime) {
		return nil
	}
	days := []string{now.Format("01-02")}
	if now.Month() == time.February && now.Day() == 28 && !isLeap(now.Year()) {
		days = append(days, "02-29")
	}
	expr := "strftime('%m-%d', birth_date)"
	if s.db.Dialect() == "mysql" {
		expr = "DATE_FORMAT(birth_date, '%m-%d')"
	}
	return s.forPatients(ctx, s.db.Conn(ctx).Model(&model.Patient{}).Where(expr+" IN ?", days), func(id uint64) Notice {
		return Notice{PatientID: id, Reason: ReasonBirthday, Occurrence: fmt.Sprint(now.Year()),
			Params: map[string]string{"title": "生日快乐", "note": r.BirthdayText}}
	})
}

func isLeap(y int) bool { return y%4 == 0 && (y%100 != 0 || y%400 == 0) }

// holidays greets every patient on a configured holiday.
func (s *Scheduler) holidays(ctx context.Context, r Rules, now time.Time) error {
	if !after(now, r.HolidayTime) {
		return nil
	}
	today := now.Format(time.DateOnly)
	for _, h := range r.Holidays {
		if h.Date != today {
			continue
		}
		err := s.forPatients(ctx, s.db.Conn(ctx).Model(&model.Patient{}), func(id uint64) Notice {
			return Notice{PatientID: id, Reason: ReasonHoliday, Occurrence: h.Date,
				Params: map[string]string{"title": h.Title, "note": h.Text}}
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// forPatients enqueues mk(id) for every live patient q selects, a page at a
// time.
func (s *Scheduler) forPatients(ctx context.Context, q *gorm.DB, mk func(id uint64) Notice) error {
	var last uint64
	for {
		var ids []uint64
		if err := q.Session(&gorm.Session{}).Where("id > ? AND erased_at IS NULL AND blocked_at IS NULL", last).
			Order("id").Limit(1000).Pluck("id", &ids).Error; err != nil {
			return err
		}
		if len(ids) == 0 {
			return nil
		}
		ns := make([]Notice, len(ids))
		for i, id := range ids {
			ns[i] = mk(id)
		}
		if err := s.out.EnqueueMany(ctx, ns); err != nil {
			return err
		}
		last = ids[len(ids)-1]
		s.out.Wake(ctx)
	}
}
