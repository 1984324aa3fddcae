package service

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
	"careloop/notify"
)

// Holiday is a day of holiday care with its greeting.
type Holiday struct {
	Date  string `json:"date"` // YYYY-MM-DD
	Title string `json:"title"`
	Text  string `json:"text"`
}

// CareSettings are the care rules' settings, editable by admins.
type CareSettings struct {
	ReminderTime     string    `json:"reminder_time"`      // the day before a checkup, HH:MM
	SurveyDelayHours int       `json:"survey_delay_hours"` // after a completed checkup
	RecheckMonths    int       `json:"recheck_months"`     // after the last completed checkup
	BirthdayTime     string    `json:"birthday_time"`      // HH:MM on the day
	BirthdayText     string    `json:"birthday_text"`
	HolidayTime      string    `json:"holiday_time"`
	Holidays         []Holiday `json:"holidays"`
}

// DefaultCareSettings: reminders at 18:00 the day before, surveys two hours after,
// re-checks at eleven months, birthdays at 09:00.
func DefaultCareSettings() CareSettings {
	return CareSettings{ReminderTime: "18:00", SurveyDelayHours: 2, RecheckMonths: 11, BirthdayTime: "09:00",
		BirthdayText: "祝您生日快乐，身体健康！", HolidayTime: "09:00", Holidays: []Holiday{}}
}

// ErrBadCareSettings says the settings do not make sense.
var ErrBadCareSettings = model.NewError(model.KindRule, "invalid_rules", "规则设置不正确：时间为 HH:MM，日期为 YYYY-MM-DD，间隔为正数")

func clock(s string) (int, int, bool) {
	t, err := time.Parse("15:04", s)
	return t.Hour(), t.Minute(), err == nil
}

// Validate checks the settings.
func (r CareSettings) Validate() error {
	for _, s := range []string{r.ReminderTime, r.BirthdayTime, r.HolidayTime} {
		if _, _, ok := clock(s); !ok {
			return ErrBadCareSettings
		}
	}
	if r.SurveyDelayHours < 0 || r.SurveyDelayHours > 24*30 || r.RecheckMonths < 1 || r.RecheckMonths > 36 {
		return ErrBadCareSettings
	}
	for _, h := range r.Holidays {
		if _, err := time.Parse(time.DateOnly, h.Date); err != nil || strings.TrimSpace(h.Title) == "" || utf8.RuneCountInString(h.Text) > 200 {
			return ErrBadCareSettings
		}
	}
	return nil
}

// CareRules is the care-rules use case: the settings admins edit (cached
// for the use cases that read them on every booking) and the greetings it
// sends itself (birthdays, holidays).
type CareRules struct {
	db    *model.DB
	out   *notify.Outbox
	now   func() time.Time
	cache ttlCache
}

// NewCareRules returns the care-rules use case.
func NewCareRules(db *model.DB, out *notify.Outbox, now func() time.Time) *CareRules {
	if now == nil {
		now = time.Now
	}
	return &CareRules{db: db, out: out, now: now}
}

const careSettingsKey = "notify.rules"

// load reads the settings (defaults when never saved).
func (s *CareRules) load(ctx context.Context) (CareSettings, error) {
	var st model.Setting
	err := s.db.Conn(ctx).Where("`key` = ?", careSettingsKey).Take(&st).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return DefaultCareSettings(), nil
	}
	if err != nil {
		return CareSettings{}, fmt.Errorf("load care settings: %w", err)
	}
	r := DefaultCareSettings()
	if err := json.Unmarshal([]byte(st.Value), &r); err != nil {
		return CareSettings{}, fmt.Errorf("care settings: %w", err)
	}
	return r, nil
}

// Current returns the settings as other use cases read them: cached for
// seconds, the defaults when they cannot be read.
func (s *CareRules) Current(ctx context.Context) CareSettings {
	if v, ok := s.cache.get("rules"); ok {
		return v.(CareSettings)
	}
	r, err := s.load(ctx)
	if err != nil {
		return DefaultCareSettings()
	}
	s.cache.put("rules", r, 30*time.Second)
	return r
}

// Settings returns the settings to staff who manage them.
func (s *CareRules) Settings(ctx context.Context, by Principal) (CareSettings, error) {
	if err := by.must(ActCareRules); err != nil {
		return CareSettings{}, err
	}
	return s.load(ctx)
}

// Save stores new settings; this process sees them at once, others within
// the cache's seconds.
func (s *CareRules) Save(ctx context.Context, by Principal, r CareSettings) error {
	if err := by.must(ActCareRules); err != nil {
		return err
	}
	if err := r.Validate(); err != nil {
		return err
	}
	b, _ := json.Marshal(r)
	if err := s.db.Conn(ctx).Clauses(clause.OnConflict{UpdateAll: true}).
		Create(&model.Setting{Key: careSettingsKey, Value: string(b), UpdatedBy: by.ID, UpdatedAt: s.now()}).Error; err != nil {
		return fmt.Errorf("save care settings: %w", err)
	}
	s.cache.forget("rules")
	return nil
}

// Scheduler runs the care rules every minute: the birthday and holiday
// greetings and the rules other use cases own (no-shows and re-checks
// belong to booking, expiry to points, escalation to chat). Any number of
// instances may run it at once: every notice has a dedupe key per
// occurrence, so each occurrence yields one notification.
type Scheduler struct {
	care  *CareRules
	log   *slog.Logger
	extra []Rule
}

// Rule is a care rule owned elsewhere; it must be safe to run on many
// instances at once.
type Rule func(ctx context.Context, now time.Time) error

// NewScheduler returns the scheduler of the care rules and extra rules.
func NewScheduler(care *CareRules, log *slog.Logger, extra ...Rule) *Scheduler {
	return &Scheduler{care: care, log: log, extra: extra}
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
	rules, err := s.care.load(ctx)
	if err != nil {
		return err
	}
	now := s.care.now().In(model.Shanghai)
	errs := []error{s.care.birthdays(ctx, rules, now), s.care.holidays(ctx, rules, now)}
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
func (s *CareRules) birthdays(ctx context.Context, r CareSettings, now time.Time) error {
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
	return s.forPatients(ctx, s.db.Conn(ctx).Model(&model.Patient{}).Where(expr+" IN ?", days), func(id uint64) notify.Notice {
		return notify.Notice{PatientID: id, Reason: notify.ReasonBirthday, Occurrence: fmt.Sprint(now.Year()),
			Params: map[string]string{"title": "生日快乐", "note": r.BirthdayText}}
	})
}

func isLeap(y int) bool { return y%4 == 0 && (y%100 != 0 || y%400 == 0) }

// holidays greets every patient on a configured holiday.
func (s *CareRules) holidays(ctx context.Context, r CareSettings, now time.Time) error {
	if !after(now, r.HolidayTime) {
		return nil
	}
	today := now.Format(time.DateOnly)
	for _, h := range r.Holidays {
		if h.Date != today {
			continue
		}
		err := s.forPatients(ctx, s.db.Conn(ctx).Model(&model.Patient{}), func(id uint64) notify.Notice {
			return notify.Notice{PatientID: id, Reason: notify.ReasonHoliday, Occurrence: h.Date,
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
func (s *CareRules) forPatients(ctx context.Context, q *gorm.DB, mk func(id uint64) notify.Notice) error {
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
		ns := make([]notify.Notice, len(ids))
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
