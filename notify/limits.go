package notify

import (
	"context"
	mrand "math/rand/v2"
	"time"

	"gorm.io/gorm"

	"careloop/model"
)

// WeChat API names, for rates and holds.
const (
	apiSubscribe = "subscribe_send"
	apiTemplate  = "template_send"
	apiCustomer  = "custom_send"
)

func apiOf(channel string) string {
	switch channel {
	case ChannelSubscribe:
		return apiSubscribe
	case ChannelCustomer:
		return apiCustomer
	}
	return apiTemplate
}

// windowTTL and windowReplies are WeChat's customer-service window: 5
// messages within 48 hours of the user's last message.
const (
	windowTTL     = 48 * time.Hour
	windowReplies = 5
)

// recentNotice finds a notice of n's reason sent to n's patient within the
// duration.
func (d *Dispatcher) recentNotice(ctx context.Context, n *model.Notification, within time.Duration) (time.Time, bool) {
	var prev model.Notification
	err := d.db.Conn(ctx).Select("id", "sent_at").Where("patient_id = ? AND reason = ? AND status = ? AND channel IN ? AND sent_at > ? AND id <> ?",
		n.PatientID, n.Reason, model.NotifySent, []string{ChannelSubscribe, ChannelOATemplate}, d.now().Add(-within).UTC(), n.ID).
		Order("sent_at DESC").Take(&prev).Error
	if err != nil || prev.SentAt == nil {
		return time.Time{}, false
	}
	return *prev.SentAt, true
}

// giveBack returns what a send that did not happen had taken: a subscribe
// credit or a customer-window message.
func (d *Dispatcher) giveBack(ctx context.Context, n *model.Notification, ch ChannelTemplate, to string) {
	switch {
	case ch.Channel == ChannelSubscribe && !ch.LongTerm:
		d.returnCredit(ctx, n.PatientID, ch.TemplateID)
	case ch.Channel == ChannelCustomer:
		d.bestEffort("give back a window message", d.db.Conn(ctx).Model(&model.Follower{}).Where("open_id = ? AND window_replies > 0", to).
			Update("window_replies", gorm.Expr("window_replies - 1")))
	}
}

// takeWindow counts one customer message against the follower's window, if
// the window is open and has messages left.
func (d *Dispatcher) takeWindow(ctx context.Context, openID string) (bool, error) {
	res := d.db.Conn(ctx).Model(&model.Follower{}).
		Where("open_id = ? AND window_opened_at > ? AND window_replies < ?", openID, d.now().Add(-windowTTL).UTC(), windowReplies).
		Update("window_replies", gorm.Expr("window_replies + 1"))
	return res.RowsAffected == 1, res.Error
}

// closeWindow records WeChat's word that the window is closed or used up.
func (d *Dispatcher) closeWindow(ctx context.Context, openID string) {
	d.bestEffort("close window", d.db.Conn(ctx).Model(&model.Follower{}).Where("open_id = ?", openID).Update("window_replies", windowReplies))
}

// takeCredit spends one subscribe credit, if there is one.
func (d *Dispatcher) takeCredit(ctx context.Context, patientID uint64, tmpl string) (bool, error) {
	res := d.db.Conn(ctx).Model(&model.SubscribeCredit{}).
		Where("patient_id = ? AND template_id = ? AND credits > 0", patientID, tmpl).
		Update("credits", gorm.Expr("credits - 1"))
	return res.RowsAffected == 1, res.Error
}

func (d *Dispatcher) returnCredit(ctx context.Context, patientID uint64, tmpl string) {
	d.bestEffort("return credit", d.db.Conn(ctx).Model(&model.SubscribeCredit{}).Where("patient_id = ? AND template_id = ?", patientID, tmpl).
		Update("credits", gorm.Expr("credits + 1")))
}

func (d *Dispatcher) zeroCredit(ctx context.Context, patientID uint64, tmpl string) {
	d.bestEffort("zero credit", d.db.Conn(ctx).Model(&model.SubscribeCredit{}).Where("patient_id = ? AND template_id = ?", patientID, tmpl).
		Update("credits", 0))
}

// held reports whether api is paused after a 45009, until when.
func (d *Dispatcher) held(ctx context.Context, api string) (time.Time, bool) {
	d.holdMu.Lock()
	until, ok := d.holds[api]
	checked := d.asked[api]
	d.holdMu.Unlock()
	if ok && d.now().Before(until) {
		return until, true
	}
	if time.Since(checked) < time.Second {
		return time.Time{}, false // asked the coordinator less than a second ago
	}
	v, found, err := d.co.Get(ctx, "notify:hold:"+api)
	d.holdMu.Lock()
	d.asked[api] = time.Now()
	d.holdMu.Unlock()
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
	// Tokens are taken from the shared counter a few at a time, so that a
	// send costs a Redis round trip only once per chunk.
	chunk := max(1, min(16, d.cfg.RatePerSecond/20))
	for {
		d.rateMu.Lock()
		p := d.tokens[api]
		if p != nil && p.left > 0 && time.Now().Before(p.ends) {
			p.left--
			d.rateMu.Unlock()
			return nil
		}
		d.rateMu.Unlock()
		got, wait, err := d.co.AllowN(ctx, "notify:rate:"+api, chunk, d.cfg.RatePerSecond, time.Second)
		if err != nil {
			return nil // a coordinator outage must not stop delivery
		}
		if got > 0 {
			d.rateMu.Lock()
			d.tokens[api] = &tokenPool{left: got - 1, ends: time.Now().Add(wait)}
			d.rateMu.Unlock()
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait + time.Duration(mrand.IntN(5))*time.Millisecond):
		}
	}
}
