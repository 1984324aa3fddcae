package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"gorm.io/gorm/clause"

	"careloop/model"
)

// Config tunes the dispatcher.
type Config struct {
	Reasons []Reason
	// QuietStart and QuietEnd bound the quiet hours (Asia/Shanghai, minutes
	// after midnight): care and marketing notices due inside wait for the end.
	QuietStart, QuietEnd int
	// RatePerSecond caps sends per WeChat API across every worker.
	RatePerSecond int
	// Concurrency is the number of sends in flight per worker process.
	Concurrency int
	// Batch is how many rows a worker claims at once.
	Batch int
	// Lease is how long a claim holds before another worker may take over.
	Lease time.Duration
	// MaxAttempts before a retryable failure becomes dead.
	MaxAttempts int
	// BackoffBase is the first retry delay; it doubles per attempt, with jitter.
	BackoffBase time.Duration
	// BackoffMax caps the retry delay.
	BackoffMax time.Duration
	// Poll is how often an idle worker looks for due rows without a wake-up.
	Poll time.Duration
}

// DefaultConfig is 21:00–08:00 quiet hours, 200 sends/s per API, 32 in
// flight per worker, eight attempts from 5 s to 30 min apart.
func DefaultConfig() Config {
	return Config{
		Reasons: DefaultReasons(), QuietStart: 21 * 60, QuietEnd: 8 * 60, RatePerSecond: 200,
		Concurrency: 32, Batch: 256, Lease: time.Minute, MaxAttempts: 8,
		BackoffBase: 5 * time.Second, BackoffMax: 30 * time.Minute, Poll: 500 * time.Millisecond,
	}
}

func (c *Config) reason(name string) (Reason, bool) {
	for _, r := range c.Reasons {
		if r.Name == name {
			return r, true
		}
	}
	return Reason{}, false
}

// Notice is what business code asks to tell a patient.
type Notice struct {
	PatientID uint64
	Reason    string
	// Occurrence names the event, so that each occurrence yields one notice:
	// a booking id, a report id, a year for a birthday.
	Occurrence string
	Params     map[string]string
	// DueAt is when to send; zero means now.
	DueAt time.Time
	// Page overrides the reason's mini-program page (e.g. with an id).
	Page string
	// TemplateID picks the reason's subscribe template (reasons with
	// ChooseTemplate: campaigns).
	TemplateID string
}

// Outbox writes notices as rows. Enqueue joins the caller's transaction.
type Outbox struct {
	db  *model.DB
	cfg Config
	now func() time.Time
	// wake is called after Wake to nudge idle workers.
	wake func(ctx context.Context)
}

// NewOutbox returns the writer of notification rows.
func NewOutbox(db *model.DB, cfg Config, now func() time.Time, wake func(ctx context.Context)) *Outbox {
	if now == nil {
		now = time.Now
	}
	return &Outbox{db: db, cfg: cfg, now: now, wake: wake}
}

// ErrUnknownReason is a programming error: a reason missing from the config.
var ErrUnknownReason = fmt.Errorf("notify: unknown reason")

// Enqueue writes n inside the caller's transaction (if ctx carries one). A
// second notice with the same reason, patient and occurrence is ignored. It
// returns whether a row was written.
func (o *Outbox) Enqueue(ctx context.Context, n Notice) (bool, error) {
	row, err := o.row(n)
	if err != nil {
		return false, err
	}
	// A plain insert: MySQL's "ON DUPLICATE KEY UPDATE id=id" reports a row
	// affected even when it inserted nothing. A duplicate-key error fails
	// only this statement, not the caller's transaction (MySQL, SQLite).
	if err := o.db.Conn(ctx).Create(&row).Error; err != nil {
		if model.IsDuplicate(err) {
			return false, nil
		}
		return false, fmt.Errorf("enqueue %s: %w", n.Reason, err)
	}
	return true, nil
}

// DedupeKey is the notification's unique key: reason, patient, occurrence.
func DedupeKey(reason string, patientID uint64, occurrence string) string {
	return fmt.Sprintf("%s:%d:%s", reason, patientID, occurrence)
}

// row is the outbox row for n: its reason's category and page, due now or
// when asked, after the quiet hours where they apply.
func (o *Outbox) row(n Notice) (model.Notification, error) {
	r, ok := o.cfg.reason(n.Reason)
	if !ok {
		return model.Notification{}, fmt.Errorf("%w %q", ErrUnknownReason, n.Reason)
	}
	params, _ := json.Marshal(n.Params)
	due := n.DueAt
	if due.IsZero() {
		due = o.now()
	}
	page := n.Page
	if page == "" {
		page = r.Page
	}
	row := model.Notification{
		PatientID: n.PatientID, Reason: n.Reason, Category: r.Category, DedupeKey: DedupeKey(n.Reason, n.PatientID, n.Occurrence),
		Params: string(params), Page: page, Status: model.NotifyPending, DueAt: o.cfg.afterQuiet(r.Category, due).UTC(),
	}
	if r.ChooseTemplate {
		row.TemplateID = n.TemplateID
	}
	if r.ordered() {
		row.OrderKey = fmt.Sprintf("%s:%d", n.Reason, n.PatientID)
	}
	return row, nil
}

// Wake nudges idle workers; call it after the transaction that enqueued
// commits. A lost nudge only delays delivery until the next poll.
func (o *Outbox) Wake(ctx context.Context) {
	if o.wake != nil {
		o.wake(ctx)
	}
}

// afterQuiet moves a care or marketing notice due inside the quiet hours to
// their end; service and urgent notices go when due.
func (c *Config) afterQuiet(category string, due time.Time) time.Time {
	if category != model.CategoryCare && category != model.CategoryMarketing {
		return due
	}
	if c.QuietStart == c.QuietEnd {
		return due
	}
	local := due.In(model.Shanghai)
	minute := local.Hour()*60 + local.Minute()
	inQuiet := false
	if c.QuietStart > c.QuietEnd { // spans midnight
		inQuiet = minute >= c.QuietStart || minute < c.QuietEnd
	} else {
		inQuiet = minute >= c.QuietStart && minute < c.QuietEnd
	}
	if !inQuiet {
		return due
	}
	end := time.Date(local.Year(), local.Month(), local.Day(), c.QuietEnd/60, c.QuietEnd%60, 0, 0, model.Shanghai)
	if !end.After(local) {
		end = end.AddDate(0, 0, 1)
	}
	return end
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
	if err := o.db.Conn(ctx).Clauses(clause.OnConflict{DoNothing: true}).CreateInBatches(&rows, 500).Error; err != nil {
		return fmt.Errorf("enqueue %d %s notices: %w", len(rows), rows[0].Reason, err)
	}
	return nil
}

// Withdraw stops the notice of one occurrence while it has not gone out
// (a no-show taken back); why is what staff read in last_error.
func (o *Outbox) Withdraw(ctx context.Context, patientID uint64, reason, occurrence, why string) error {
	return o.withdraw(ctx, patientID, reason, "= ?", DedupeKey(reason, patientID, occurrence), why)
}

// WithdrawEvery stops every notice of reason whose occurrence starts with
// prefix while it has not gone out (a cancelled booking's reminders).
func (o *Outbox) WithdrawEvery(ctx context.Context, patientID uint64, reason, prefix, why string) error {
	return o.withdraw(ctx, patientID, reason, "LIKE ?"+model.LikeEscapeClause, model.LikeEscape(DedupeKey(reason, patientID, prefix))+"%", why)
}

func (o *Outbox) withdraw(ctx context.Context, patientID uint64, reason, keyCond, key, why string) error {
	err := o.db.Conn(ctx).Model(&model.Notification{}).
		Where("reason = ? AND patient_id = ? AND dedupe_key "+keyCond+" AND status IN ?", reason, patientID, key, []string{model.NotifyPending, model.NotifyFailed}).
		Updates(map[string]any{"status": model.NotifyCancelled, "last_error": model.Truncate(why, 500)}).Error
	if err != nil {
		return fmt.Errorf("withdraw %s notices of patient %d: %w", reason, patientID, err)
	}
	return nil
}

// TemplateReport applies WeChat's delivery report of an official-account
// template message (TEMPLATESENDJOBFINISH) to the notification sent with
// that msgid: success keeps it sent; a user who blocks template messages
// makes it undeliverable; any other failure makes it dead.
func (o *Outbox) TemplateReport(ctx context.Context, msgID, status string) error {
	if msgID == "" || msgID == "0" {
		return nil
	}
	upd := map[string]any{}
	switch {
	case status == "success":
		upd["last_error"] = ""
	case strings.Contains(status, "block"):
		upd["status"], upd["last_error"] = model.NotifyUndeliverable, "微信回报："+model.Truncate(status, 100)+"（用户已拒收模板消息）"
	default:
		upd["status"], upd["last_error"] = model.NotifyDead, "微信回报发送失败："+model.Truncate(status, 100)
	}
	if err := o.db.Conn(ctx).Model(&model.Notification{}).Where("channel = ? AND msg_id = ?", ChannelOATemplate, msgID).Updates(upd).Error; err != nil {
		return fmt.Errorf("template report of msgid %s: %w", msgID, err)
	}
	return nil
}

// AfterQuiet is when a notice of category due at t may go: t, or the end
// of the quiet hours where they apply.
func (o *Outbox) AfterQuiet(category string, t time.Time) time.Time {
	return o.cfg.afterQuiet(category, t)
}

// SubscribeTemplates lists the subscribe templates of a reason.
func (o *Outbox) SubscribeTemplates(reason string) []string {
	r, ok := o.cfg.reason(reason)
	if !ok {
		return nil
	}
	var out []string
	for _, ch := range r.Channels {
		if ch.Channel == ChannelSubscribe {
			out = append(out, ch.TemplateID)
		}
	}
	return out
}

// EnqueueRows writes notices in the caller's transaction and returns the
// rows with their ids (for a caller that links them, as a campaign's
// recipients do); a notice already written fails the whole call.
func (o *Outbox) EnqueueRows(ctx context.Context, ns []Notice) ([]model.Notification, error) {
	rows := make([]model.Notification, 0, len(ns))
	for _, n := range ns {
		row, err := o.row(n)
		if err != nil {
			return nil, err
		}
		rows = append(rows, row)
	}
	if len(rows) == 0 {
		return rows, nil
	}
	if err := o.db.Conn(ctx).CreateInBatches(&rows, 500).Error; err != nil {
		return nil, fmt.Errorf("enqueue %d %s notices: %w", len(rows), rows[0].Reason, err)
	}
	return rows, nil
}
