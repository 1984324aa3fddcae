package notify

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"strings"
	"sync"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"careloop/model"
)

// Sender delivers through WeChat (wxconfig.Clients satisfies it).
type Sender interface {
	Subscribe(ctx context.Context, openID, templateID, page string, data map[string]string) (string, error)
	Template(ctx context.Context, openID, templateID, clientMsgID, page string, data map[string]string) (string, error)
}

// sendError is what the dispatcher needs to know of a failed send
// (wxconfig.Error satisfies it).
type sendError interface {
	WeChatCode() int
	Retryable() bool
	OutcomeUnknown() bool
}

// Coordinator is the shared state the dispatcher uses (coord.Store
// satisfies it): a global rate, API holds, and wake-ups.
type Coordinator interface {
	Allow(ctx context.Context, key string, limit int, window time.Duration) (bool, time.Duration, error)
	Get(ctx context.Context, key string) (string, bool, error)
	Set(ctx context.Context, key, val string, ttl time.Duration) error
	Notify(ctx context.Context, topic string) error
	Subscribe(ctx context.Context, topic string) (<-chan struct{}, func())
}

// WakeTopic is the signal topic that nudges workers.
const WakeTopic = "notify"

// WeChat API names, for rates and holds.
const (
	apiSubscribe = "subscribe_send"
	apiTemplate  = "template_send"
)

func apiOf(channel string) string {
	if channel == ChannelSubscribe {
		return apiSubscribe
	}
	return apiTemplate
}

// Dispatcher claims due notifications and delivers them.
type Dispatcher struct {
	db     *model.DB
	co     Coordinator
	send   Sender
	cfg    Config
	now    func() time.Time
	log    *slog.Logger
	m      *metrics
	holdMu sync.Mutex
	holds  map[string]time.Time // local copy of API holds, refreshed from co
}

// New returns a dispatcher.
func New(db *model.DB, co Coordinator, send Sender, cfg Config, now func() time.Time, log *slog.Logger) *Dispatcher {
	if now == nil {
		now = time.Now
	}
	return &Dispatcher{db: db, co: co, send: send, cfg: cfg, now: now, log: log, m: newMetrics(), holds: map[string]time.Time{}}
}

// Run claims and delivers until ctx ends, then finishes the sends in
// flight and hands unstarted claims back.
func (d *Dispatcher) Run(ctx context.Context) error {
	wake, stop := d.co.Subscribe(ctx, WakeTopic)
	defer stop()
	jobs := make(chan model.Notification)
	var wg sync.WaitGroup
	work := context.WithoutCancel(ctx) // in-flight sends finish after ctx ends
	for i := 0; i < d.cfg.Concurrency; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range jobs {
				d.deliver(work, &n)
			}
		}()
	}
	defer func() {
		close(jobs)
		wg.Wait()
	}()
	lastSweep := time.Time{}
	for {
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(lastSweep) > d.cfg.Lease/4 {
			d.sweep(ctx)
			d.m.observeDepth(ctx, d)
			lastSweep = time.Now()
		}
		rows, err := d.claim(ctx, d.cfg.Batch)
		if err != nil && ctx.Err() == nil {
			d.log.Warn("claim notifications", "err", err)
		}
		for i, n := range rows {
			select {
			case jobs <- n:
			case <-ctx.Done():
				d.release(context.WithoutCancel(ctx), rows[i:])
				return nil
			}
		}
		if len(rows) == d.cfg.Batch {
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-wake:
		case <-time.After(d.cfg.Poll):
		}
	}
}

// ProcessDue claims what is due now and delivers it in this goroutine,
// batch after batch, until nothing is due; it returns how many it handled.
func (d *Dispatcher) ProcessDue(ctx context.Context) (int, error) {
	total := 0
	d.sweep(ctx)
	for {
		rows, err := d.claim(ctx, d.cfg.Batch)
		if err != nil {
			return total, err
		}
		if len(rows) == 0 {
			return total, nil
		}
		for i := range rows {
			d.deliver(ctx, &rows[i])
		}
		total += len(rows)
	}
}

// Wake nudges every worker.
func (d *Dispatcher) Wake(ctx context.Context) { _ = d.co.Notify(ctx, WakeTopic) }

func newToken() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// claim takes up to n due rows for this worker under a lease. On MySQL the
// candidates are locked with SKIP LOCKED, so concurrent workers take
// disjoint rows without waiting on each other; SQLite has one writer.
func (d *Dispatcher) claim(ctx context.Context, n int) ([]model.Notification, error) {
	now := d.now().UTC()
	token := newToken()
	var rows []model.Notification
	err := d.db.InTx(ctx, func(ctx context.Context) error {
		q := d.db.Conn(ctx).Model(&model.Notification{}).Select("id").
			Where("status IN ? AND due_at <= ?", []string{model.NotifyPending, model.NotifyFailed}, now).
			Order("due_at").Limit(n)
		if d.db.Dialect() == "mysql" {
			q = q.Clauses(clause.Locking{Strength: "UPDATE", Options: "SKIP LOCKED"})
		}
		var ids []uint64
		if err := q.Pluck("id", &ids).Error; err != nil {
			return err
		}
		if len(ids) == 0 {
			return nil
		}
		lease := now.Add(d.cfg.Lease)
		if err := d.db.Conn(ctx).Model(&model.Notification{}).Where("id IN ?", ids).
			Updates(map[string]any{"status": model.NotifyClaimed, "claim_token": token, "lease_until": lease}).Error; err != nil {
			return err
		}
		return d.db.Conn(ctx).Where("claim_token = ? AND id IN ?", token, ids).Order("due_at").Find(&rows).Error
	})
	return rows, err
}

// release hands claimed rows back untouched.
func (d *Dispatcher) release(ctx context.Context, rows []model.Notification) {
	for _, n := range rows {
		d.db.Conn(ctx).Model(&model.Notification{}).Where("id = ? AND claim_token = ? AND status = ?", n.ID, n.ClaimToken, model.NotifyClaimed).
			Updates(map[string]any{"status": model.NotifyPending, "claim_token": "", "lease_until": nil})
	}
}

// sweep recovers rows whose worker vanished: a claim never started goes
// back to pending; a send in flight has an unknown outcome, so it is resent
// only on the template channel, whose client_msg_id makes a resend harmless.
func (d *Dispatcher) sweep(ctx context.Context) {
	now := d.now().UTC()
	db := d.db.Conn(ctx)
	if res := db.Model(&model.Notification{}).Where("status = ? AND lease_until < ?", model.NotifyClaimed, now).
		Updates(map[string]any{"status": model.NotifyPending, "claim_token": "", "lease_until": nil}); res.RowsAffected > 0 {
		d.log.Info("recovered abandoned claims", "count", res.RowsAffected)
	}
	db.Model(&model.Notification{}).Where("status = ? AND lease_until < ? AND channel = ?", model.NotifySending, now, ChannelOATemplate).
		Updates(map[string]any{"status": model.NotifyPending, "claim_token": "", "lease_until": nil,
			"last_error": "worker stopped mid-send; resent with the same client_msg_id"})
	db.Model(&model.Notification{}).Where("status = ? AND lease_until < ? AND channel <> ?", model.NotifySending, now, ChannelOATemplate).
		Updates(map[string]any{"status": model.NotifyDead, "claim_token": "", "lease_until": nil,
			"last_error": "outcome unknown: the worker stopped mid-send; not resent to avoid a duplicate (retry by hand if needed)"})
}

// recipient is what delivery needs to know about the patient.
type recipient struct {
	openID   string // mini-program
	oaOpenID string // official account, when following
	cancel   string // why the notice must not go, if it must not
}

func (d *Dispatcher) recipient(ctx context.Context, n *model.Notification) (recipient, error) {
	var rc recipient
	var p model.Patient
	db := d.db.Conn(ctx)
	if err := db.Select("id", "open_id", "blocked_at", "erased_at").Where("id = ?", n.PatientID).Take(&p).Error; err != nil {
		if errors.Is(err, gorm.ErrRecordNotFound) {
			rc.cancel = "patient no longer exists"
			return rc, nil
		}
		return rc, err
	}
	if p.ErasedAt != nil {
		rc.cancel = "patient erased their data"
		return rc, nil
	}
	if p.OpenID != nil {
		rc.openID = *p.OpenID
	}
	var f model.Follower
	if err := db.Select("open_id").Where("patient_id = ? AND subscribed = ?", n.PatientID, true).Take(&f).Error; err == nil {
		rc.oaOpenID = f.OpenID
	}
	switch n.Category {
	case model.CategoryMarketing:
		var c model.Consent
		err := db.Where("patient_id = ? AND kind = ?", n.PatientID, model.ConsentMarketing).Order("id DESC").Take(&c).Error
		if err != nil || !c.Granted {
			rc.cancel = "no marketing consent"
			return rc, nil
		}
		fallthrough
	case model.CategoryCare:
		var pref model.NotifyPreference
		if err := db.Where("patient_id = ? AND category = ?", n.PatientID, n.Category).Take(&pref).Error; err == nil && pref.OptOut {
			rc.cancel = "patient opted out of " + n.Category + " notices"
		}
	}
	return rc, nil
}

// deliver takes one claimed row to a final or rescheduled state.
func (d *Dispatcher) deliver(ctx context.Context, n *model.Notification) {
	if err := d.deliverErr(ctx, n); err != nil {
		d.log.Error("deliver notification", "id", n.ID, "err", err)
	}
}

func (d *Dispatcher) deliverErr(ctx context.Context, n *model.Notification) error {
	r, ok := d.cfg.reason(n.Reason)
	if !ok {
		return d.finish(ctx, n, model.NotifyDead, "no configuration for reason "+n.Reason)
	}
	rc, err := d.recipient(ctx, n)
	if err != nil {
		return d.retry(ctx, n, "load recipient: "+err.Error(), false)
	}
	if rc.cancel != "" {
		return d.finish(ctx, n, model.NotifyCancelled, rc.cancel)
	}
	if due := d.cfg.afterQuiet(n.Category, d.now()); due.After(d.now()) {
		return d.reschedule(ctx, n, due, "quiet hours")
	}
	var params map[string]string
	_ = json.Unmarshal([]byte(n.Params), &params)
	var notes []string
	var heldUntil time.Time
	for _, ch := range r.Channels {
		api := apiOf(ch.Channel)
		var to string
		switch ch.Channel {
		case ChannelSubscribe:
			if rc.openID == "" {
				notes = append(notes, "subscribe: patient has no mini-program openid")
				continue
			}
			if !ch.LongTerm {
				ok, err := d.takeCredit(ctx, n.PatientID, ch.TemplateID)
				if err != nil {
					return d.retry(ctx, n, "subscribe credit: "+err.Error(), false)
				}
				if !ok {
					notes = append(notes, "subscribe: the patient has not accepted this message")
					continue
				}
			}
			to = rc.openID
		case ChannelOATemplate:
			if rc.oaOpenID == "" {
				notes = append(notes, "template: patient does not follow the official account")
				continue
			}
			to = rc.oaOpenID
		default:
			notes = append(notes, "unknown channel "+ch.Channel)
			continue
		}
		if until, held := d.held(ctx, api); held {
			if ch.Channel == ChannelSubscribe && !ch.LongTerm {
				d.returnCredit(ctx, n.PatientID, ch.TemplateID)
			}
			if heldUntil.IsZero() || until.Before(heldUntil) {
				heldUntil = until
			}
			notes = append(notes, api+": daily quota reached")
			continue
		}
		var data map[string]string
		if ch.Channel == ChannelSubscribe {
			if data, err = renderSubscribe(ch.Fields, params); err != nil {
				d.returnCredit(ctx, n.PatientID, ch.TemplateID)
				return d.finish(ctx, n, model.NotifyDead, "template params: "+err.Error())
			}
		} else {
			data = renderTemplate(ch.Fields, params)
		}
		if err := d.waitRate(ctx, api); err != nil {
			return err
		}
		payload, _ := json.Marshal(map[string]any{"touser": to, "template_id": ch.TemplateID, "page": n.Page, "data": data})
		if ok, err := d.markSending(ctx, n, ch, string(payload)); err != nil || !ok {
			return err // the lease was lost: someone else owns the row now
		}
		var msgID string
		if ch.Channel == ChannelSubscribe {
			msgID, err = d.send.Subscribe(ctx, to, ch.TemplateID, n.Page, data)
		} else {
			msgID, err = d.send.Template(ctx, to, ch.TemplateID, fmt.Sprintf("careloop-%d", n.ID), n.Page, data)
		}
		if err == nil {
			d.m.sent.WithLabelValues(n.Reason, ch.Channel).Inc()
			return d.markSent(ctx, n, msgID)
		}
		var se sendError
		if !errors.As(err, &se) {
			return d.retry(ctx, n, err.Error(), true)
		}
		code := se.WeChatCode()
		switch {
		case code == 43101: // refused or no credit: the credit is gone, try the next channel
			d.zeroCredit(ctx, n.PatientID, ch.TemplateID)
			notes = append(notes, "subscribe: 43101 refused")
			continue
		case code == 43004: // no longer follows
			d.db.Conn(ctx).Model(&model.Follower{}).Where("open_id = ?", to).Update("subscribed", false)
			notes = append(notes, "template: 43004 not a follower")
			continue
		case code == 45009:
			until := d.hold(ctx, api)
			if until.Before(heldUntil) || heldUntil.IsZero() {
				heldUntil = until
			}
			d.undoAttempt(ctx, n)
			notes = append(notes, api+": 45009 daily quota reached")
			continue
		case code == 45011:
			d.undoAttempt(ctx, n)
			next := d.now().Truncate(time.Minute).Add(time.Minute)
			return d.reschedule(ctx, n, next, "45011 per-minute limit")
		case se.OutcomeUnknown():
			if ch.Channel == ChannelOATemplate {
				return d.retry(ctx, n, "outcome unknown; resending with the same client_msg_id: "+err.Error(), true)
			}
			return d.finish(ctx, n, model.NotifyDead, "outcome unknown (timeout after sending); not resent to avoid a duplicate")
		case se.Retryable() || code == 40001 || code == 42001 || code == 40014:
			if ch.Channel == ChannelSubscribe && !ch.LongTerm {
				d.returnCredit(ctx, n.PatientID, ch.TemplateID)
			}
			return d.retry(ctx, n, err.Error(), true)
		default: // 40003, 40037, 47003, 41030 …: a bug or bad config
			if ch.Channel == ChannelSubscribe && !ch.LongTerm {
				d.returnCredit(ctx, n.PatientID, ch.TemplateID)
			}
			d.m.dead.WithLabelValues(n.Reason, ch.Channel).Inc()
			return d.finish(ctx, n, model.NotifyDead, err.Error())
		}
	}
	if !heldUntil.IsZero() {
		return d.reschedule(ctx, n, heldUntil, strings.Join(notes, "; "))
	}
	d.m.undeliverable.WithLabelValues(n.Reason).Inc()
	return d.finish(ctx, n, model.NotifyUndeliverable, strings.Join(notes, "; "))
}

// takeCredit spends one subscribe credit, if there is one.
func (d *Dispatcher) takeCredit(ctx context.Context, patientID uint64, tmpl string) (bool, error) {
	res := d.db.Conn(ctx).Model(&model.SubscribeCredit{}).
		Where("patient_id = ? AND template_id = ? AND credits > 0", patientID, tmpl).
		Update("credits", gorm.Expr("credits - 1"))
	return res.RowsAffected == 1, res.Error
}

func (d *Dispatcher) returnCredit(ctx context.Context, patientID uint64, tmpl string) {
	d.db.Conn(ctx).Model(&model.SubscribeCredit{}).Where("patient_id = ? AND template_id = ?", patientID, tmpl).
		Update("credits", gorm.Expr("credits + 1"))
}

func (d *Dispatcher) zeroCredit(ctx context.Context, patientID uint64, tmpl string) {
	d.db.Conn(ctx).Model(&model.SubscribeCredit{}).Where("patient_id = ? AND template_id = ?", patientID, tmpl).
		Update("credits", 0)
}

// held reports whether api is paused after a 45009, until when.
func (d *Dispatcher) held(ctx context.Context, api string) (time.Time, bool) {
	d.holdMu.Lock()
	until, ok := d.holds[api]
	d.holdMu.Unlock()
	if ok && d.now().Before(until) {
		return until, true
	}
	v, found, err := d.co.Get(ctx, "notify:hold:"+api)
	if err != nil || !found {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil || !d.now().Before(t) {
		return time.Time{}, false
	}
	d.holdMu.Lock()
	d.holds[api] = t
	d.holdMu.Unlock()
	return t, true
}

// hold pauses api until WeChat's daily quota resets (midnight in Beijing)
// for every worker, and alerts staff.
func (d *Dispatcher) hold(ctx context.Context, api string) time.Time {
	now := d.now().In(model.Shanghai)
	until := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, model.Shanghai).AddDate(0, 0, 1)
	_ = d.co.Set(ctx, "notify:hold:"+api, until.Format(time.RFC3339), until.Sub(now))
	d.holdMu.Lock()
	d.holds[api] = until
	d.holdMu.Unlock()
	d.m.quota.WithLabelValues(api).Inc()
	d.log.Error("ALERT: WeChat daily quota reached; sends on this API are held until it resets", "api", api, "until", until.Format(time.RFC3339))
	return until
}

// Holds lists the APIs currently paused and until when, for staff.
func (d *Dispatcher) Holds(ctx context.Context) map[string]time.Time {
	out := map[string]time.Time{}
	for _, api := range []string{apiSubscribe, apiTemplate} {
		if until, ok := d.held(ctx, api); ok {
			out[api] = until
		}
	}
	return out
}

// waitRate keeps every worker together under RatePerSecond per API.
func (d *Dispatcher) waitRate(ctx context.Context, api string) error {
	for {
		ok, wait, err := d.co.Allow(ctx, "notify:rate:"+api, d.cfg.RatePerSecond, time.Second)
		if err != nil || ok {
			return nil // a coordinator outage must not stop delivery
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait + time.Duration(mrand.IntN(5))*time.Millisecond):
		}
	}
}

func (d *Dispatcher) markSending(ctx context.Context, n *model.Notification, ch ChannelTemplate, payload string) (bool, error) {
	lease := d.now().UTC().Add(d.cfg.Lease)
	res := d.db.Conn(ctx).Model(&model.Notification{}).
		Where("id = ? AND claim_token = ? AND status IN ?", n.ID, n.ClaimToken, []string{model.NotifyClaimed, model.NotifySending}).
		Updates(map[string]any{"status": model.NotifySending, "channel": ch.Channel, "template_id": ch.TemplateID,
			"payload": payload, "attempts": gorm.Expr("attempts + 1"), "lease_until": lease})
	if res.Error != nil {
		return false, res.Error
	}
	n.Attempts++
	n.Channel = ch.Channel
	return res.RowsAffected == 1, nil
}

func (d *Dispatcher) undoAttempt(ctx context.Context, n *model.Notification) {
	d.db.Conn(ctx).Model(&model.Notification{}).Where("id = ? AND claim_token = ?", n.ID, n.ClaimToken).
		Update("attempts", gorm.Expr("attempts - 1"))
	n.Attempts--
}

func (d *Dispatcher) markSent(ctx context.Context, n *model.Notification, msgID string) error {
	now := d.now().UTC()
	return d.db.Conn(ctx).Model(&model.Notification{}).Where("id = ? AND claim_token = ?", n.ID, n.ClaimToken).
		Updates(map[string]any{"status": model.NotifySent, "msg_id": msgID, "sent_at": now, "last_error": "",
			"claim_token": "", "lease_until": nil}).Error
}

func (d *Dispatcher) finish(ctx context.Context, n *model.Notification, status, why string) error {
	return d.db.Conn(ctx).Model(&model.Notification{}).Where("id = ? AND claim_token = ?", n.ID, n.ClaimToken).
		Updates(map[string]any{"status": status, "last_error": truncate(why, 500), "claim_token": "", "lease_until": nil}).Error
}

func (d *Dispatcher) reschedule(ctx context.Context, n *model.Notification, at time.Time, why string) error {
	return d.db.Conn(ctx).Model(&model.Notification{}).Where("id = ? AND claim_token = ?", n.ID, n.ClaimToken).
		Updates(map[string]any{"status": model.NotifyPending, "due_at": at.UTC(), "last_error": truncate(why, 500),
			"claim_token": "", "lease_until": nil}).Error
}

// retry schedules the next attempt with exponential backoff and jitter, or
// gives up after MaxAttempts.
func (d *Dispatcher) retry(ctx context.Context, n *model.Notification, why string, counted bool) error {
	if counted && n.Attempts >= d.cfg.MaxAttempts {
		d.m.dead.WithLabelValues(n.Reason, n.Channel).Inc()
		return d.finish(ctx, n, model.NotifyDead, fmt.Sprintf("gave up after %d attempts: %s", n.Attempts, why))
	}
	delay := d.cfg.BackoffBase << max(n.Attempts-1, 0)
	if delay > d.cfg.BackoffMax || delay <= 0 {
		delay = d.cfg.BackoffMax
	}
	delay = delay/2 + time.Duration(mrand.Int64N(int64(delay))) // jitter: 50%–150%
	d.m.retried.WithLabelValues(n.Reason).Inc()
	return d.db.Conn(ctx).Model(&model.Notification{}).Where("id = ? AND claim_token = ?", n.ID, n.ClaimToken).
		Updates(map[string]any{"status": model.NotifyFailed, "due_at": d.now().UTC().Add(delay), "last_error": truncate(why, 500),
			"claim_token": "", "lease_until": nil}).Error
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
