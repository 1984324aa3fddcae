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
	"careloop/wxconfig"
)

// Sender delivers through WeChat (wxconfig.Clients satisfies it).
type Sender interface {
	Subscribe(ctx context.Context, openID, templateID, page string, data map[string]string) (string, error)
	Template(ctx context.Context, openID, templateID, clientMsgID, page string, data map[string]string) (string, error)
	// Customer sends an official-account customer-service text message.
	Customer(ctx context.Context, openID, text string) error
}

// sendError is what the dispatcher needs to know of a failed send
// (wxconfig.Error satisfies it).
type sendError interface {
	Outcome() wxconfig.Outcome
	// Chinese says what went wrong for staff, with the errcode.
	Chinese() string
}

// staffReason is err as staff read it in last_error: WeChat's answer in
// Chinese with its errcode, anything else as an internal error.
func staffReason(err error) string {
	var se sendError
	if errors.As(err, &se) {
		return se.Chinese()
	}
	return "内部错误（将重试）：" + model.Truncate(err.Error(), 200)
}

// Coordinator is the shared state the dispatcher uses (coord.Store
// satisfies it): a global rate, API holds, and wake-ups.
type Coordinator interface {
	AllowN(ctx context.Context, key string, n, limit int, window time.Duration) (int, time.Duration, error)
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
	asked  map[string]time.Time // when each API's hold was last read from co
	// sentQ feeds the committer while Run runs.
	sentQ  chan sentResult
	rateMu sync.Mutex
	tokens map[string]*tokenPool
}

// tokenPool is this worker's share of the global send rate for one second.
type tokenPool struct {
	left int
	ends time.Time
}

// New returns a dispatcher.
func New(db *model.DB, co Coordinator, send Sender, cfg Config, now func() time.Time, log *slog.Logger) *Dispatcher {
	if now == nil {
		now = time.Now
	}
	return &Dispatcher{db: db, co: co, send: send, cfg: cfg, now: now, log: log, m: newMetrics(),
		holds: map[string]time.Time{}, asked: map[string]time.Time{}, tokens: map[string]*tokenPool{}}
}

// Run claims and delivers until ctx ends, then finishes the sends in
// flight and hands unstarted claims back.
func (d *Dispatcher) Run(ctx context.Context) error {
	wake, stop := d.co.Subscribe(ctx, WakeTopic)
	defer stop()
	jobs := make(chan job)
	var wg sync.WaitGroup
	work := context.WithoutCancel(ctx) // in-flight sends finish after ctx ends
	sentQ := make(chan sentResult, 1024)
	committed := make(chan struct{})
	d.sentQ = sentQ
	go func() { d.commitSent(work, sentQ); close(committed) }()
	for i := 0; i < d.cfg.Concurrency; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				d.deliver(work, &j.n, j.rc)
			}
		}()
	}
	defer func() {
		close(jobs)
		wg.Wait()
		d.sentQ = nil
		close(sentQ)
		<-committed
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
		rcs, err := d.recipients(ctx, rows)
		if err != nil {
			d.log.Warn("load recipients", "err", err)
			d.release(context.WithoutCancel(ctx), rows)
			rows = nil
		}
		for i, n := range rows {
			select {
			case jobs <- job{n: n, rc: rcs[n.PatientID]}:
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
		rcs, err := d.recipients(ctx, rows)
		if err != nil {
			d.release(ctx, rows)
			return total, err
		}
		for i := range rows {
			d.deliver(ctx, &rows[i], rcs[rows[i].PatientID])
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

// unfinished are the statuses of a row that may still be sent.
var unfinished = []string{model.NotifyPending, model.NotifyClaimed, model.NotifySending, model.NotifyFailed}

// claim takes up to n due rows for this worker under a lease. On MySQL the
// candidates are locked with SKIP LOCKED, so concurrent workers take
// disjoint rows without waiting on each other; SQLite has one writer.
func (d *Dispatcher) claim(ctx context.Context, n int) ([]model.Notification, error) {
	now := d.now().UTC()
	token := newToken()
	var rows []model.Notification
	err := d.db.InTx(ctx, func(ctx context.Context) error {
		// One status at a time, so that the (status, due_at) index yields
		// rows in order and only the rows returned are locked; with
		// "status IN (…) ORDER BY due_at" MySQL sorts, locking every
		// candidate, and the other workers' SKIP LOCKED finds nothing.
		for _, status := range []string{model.NotifyPending, model.NotifyFailed} {
			if len(rows) >= n {
				break
			}
			// A row with an order key waits for every earlier row of its key
			// to finish: one at a time, in the order written, across retries.
			// (On MySQL the subquery is a plain consistent read, not locked.)
			q := d.db.Conn(ctx).Where("status = ? AND due_at <= ?", status, now).
				Where("(order_key = '' OR order_key IS NULL OR NOT EXISTS (SELECT 1 FROM notifications prev WHERE prev.order_key = notifications.order_key AND prev.id < notifications.id AND prev.status IN ?))",
					unfinished).
				Order("due_at").Limit(n - len(rows))
			if d.db.Dialect() == "mysql" {
				q = q.Clauses(clause.Locking{Strength: "UPDATE", Options: "SKIP LOCKED"})
			}
			var more []model.Notification
			if err := q.Find(&more).Error; err != nil {
				return err
			}
			rows = append(rows, more...)
		}
		if len(rows) == 0 {
			return nil
		}
		ids := make([]uint64, len(rows))
		lease := now.Add(d.cfg.Lease)
		for i := range rows {
			ids[i] = rows[i].ID
			rows[i].Status, rows[i].ClaimToken, rows[i].LeaseUntil = model.NotifyClaimed, token, &lease
		}
		return d.db.Conn(ctx).Model(&model.Notification{}).Where("id IN ?", ids).
			Updates(map[string]any{"status": model.NotifyClaimed, "claim_token": token, "lease_until": lease}).Error
	})
	if err != nil {
		return nil, err
	}
	return rows, err
}

// release hands claimed rows back untouched.
func (d *Dispatcher) release(ctx context.Context, rows []model.Notification) {
	for _, n := range rows {
		d.bestEffort("release claim", d.db.Conn(ctx).Model(&model.Notification{}).Where("id = ? AND claim_token = ? AND status = ?", n.ID, n.ClaimToken, model.NotifyClaimed).
			Updates(map[string]any{"status": model.NotifyPending, "claim_token": "", "lease_until": nil}))
	}
}

// sweep recovers rows whose worker vanished: a claim never started goes
// back to pending; a send in flight has an unknown outcome, so it is resent
// only on the template channel, whose client_msg_id makes a resend harmless.
func (d *Dispatcher) sweep(ctx context.Context) {
	now := d.now().UTC()
	db := d.db.Conn(ctx)
	if res := db.Model(&model.Notification{}).Where("status = ? AND lease_until < ?", model.NotifyClaimed, now).
		Updates(map[string]any{"status": model.NotifyPending, "claim_token": "", "lease_until": nil}); d.bestEffort("sweep claims", res) && res.RowsAffected > 0 {
		d.log.Info("recovered abandoned claims", "count", res.RowsAffected)
	}
	d.bestEffort("sweep template sends", db.Model(&model.Notification{}).Where("status = ? AND lease_until < ? AND channel = ?", model.NotifySending, now, ChannelOATemplate).
		Updates(map[string]any{"status": model.NotifyPending, "claim_token": "", "lease_until": nil,
			"last_error": "发送中工作进程中断；以相同 client_msg_id 重发"}))
	d.bestEffort("sweep other sends", db.Model(&model.Notification{}).Where("status = ? AND lease_until < ? AND channel <> ?", model.NotifySending, now, ChannelOATemplate).
		Updates(map[string]any{"status": model.NotifyDead, "claim_token": "", "lease_until": nil,
			"last_error": "发送中工作进程中断，结果未知；为免重复不再重发（如需可手动重试）"}))
}

// recipient is what delivery needs to know about the patient.
type recipient struct {
	openID    string          // mini-program
	oaOpenID  string          // official account, when following
	cancel    string          // why no notice may go, if none may
	marketing bool            // the latest marketing consent grants it
	optOut    map[string]bool // categories opted out of
	credits   map[string]int  // subscribe credits per template when the batch was claimed
	window    bool            // the customer-service window was open when the batch was claimed
}

// job is a claimed row and its recipient.
type job struct {
	n  model.Notification
	rc recipient
}

// recipients loads, for a claimed batch, what delivery needs to know about
// each patient, in a handful of queries for the whole batch.
func (d *Dispatcher) recipients(ctx context.Context, rows []model.Notification) (map[uint64]recipient, error) {
	out := make(map[uint64]recipient, len(rows))
	if len(rows) == 0 {
		return out, nil
	}
	ids := make([]uint64, 0, len(rows))
	seen := map[uint64]bool{}
	cats := map[uint64]map[string]bool{}
	for _, n := range rows {
		if !seen[n.PatientID] {
			seen[n.PatientID] = true
			ids = append(ids, n.PatientID)
		}
		if cats[n.PatientID] == nil {
			cats[n.PatientID] = map[string]bool{}
		}
		cats[n.PatientID][n.Category] = true
	}
	db := d.db.Conn(ctx)
	var patients []model.Patient
	if err := db.Select("id", "open_id", "erased_at").Where("id IN ?", ids).Find(&patients).Error; err != nil {
		return nil, err
	}
	for _, id := range ids {
		out[id] = recipient{cancel: "患者记录已不存在"}
	}
	for _, p := range patients {
		rc := recipient{}
		if p.ErasedAt != nil {
			rc.cancel = "患者已注销"
		} else if p.OpenID != nil {
			rc.openID = *p.OpenID
		}
		out[p.ID] = rc
	}
	var followers []model.Follower
	if err := db.Select("open_id", "patient_id", "window_opened_at", "window_replies").Where("patient_id IN ? AND subscribed = ?", ids, true).
		Order("window_opened_at").Find(&followers).Error; err != nil {
		return nil, err
	}
	for _, f := range followers { // the most recent window last: it wins
		if rc := out[*f.PatientID]; rc.cancel == "" {
			rc.oaOpenID = f.OpenID
			rc.window = f.WindowOpenedAt != nil && d.now().Sub(*f.WindowOpenedAt) < windowTTL && f.WindowReplies < windowReplies
			out[*f.PatientID] = rc
		}
	}
	var credits []model.SubscribeCredit
	if err := db.Where("patient_id IN ? AND credits > 0", ids).Find(&credits).Error; err != nil {
		return nil, err
	}
	for _, c := range credits {
		rc := out[c.PatientID]
		if rc.credits == nil {
			rc.credits = map[string]int{}
		}
		rc.credits[c.TemplateID] = c.Credits
		out[c.PatientID] = rc
	}
	var optional []uint64 // patients with care or marketing notices in this batch
	for id, c := range cats {
		if c[model.CategoryCare] || c[model.CategoryMarketing] {
			optional = append(optional, id)
		}
	}
	if len(optional) == 0 {
		return out, nil
	}
	var prefs []model.NotifyPreference
	if err := db.Where("patient_id IN ? AND opt_out = ?", optional, true).Find(&prefs).Error; err != nil {
		return nil, err
	}
	for _, p := range prefs {
		rc := out[p.PatientID]
		if rc.optOut == nil {
			rc.optOut = map[string]bool{}
		}
		rc.optOut[p.Category] = true
		out[p.PatientID] = rc
	}
	var consents []model.Consent
	if err := db.Where("patient_id IN ? AND kind = ?", optional, model.ConsentMarketing).Order("id").Find(&consents).Error; err != nil {
		return nil, err
	}
	for _, c := range consents { // in id order: the last one wins
		rc := out[c.PatientID]
		rc.marketing = c.Granted
		out[c.PatientID] = rc
	}
	return out, nil
}

// cancelReason says why n must not go to rc, or "".
func (rc recipient) cancelReason(n *model.Notification) string {
	switch {
	case rc.cancel != "":
		return rc.cancel
	case n.Category == model.CategoryMarketing && !rc.marketing:
		return "患者未同意接收营销消息"
	case (n.Category == model.CategoryCare || n.Category == model.CategoryMarketing) && rc.optOut[n.Category]:
		return "患者已关闭" + categoryName[n.Category] + "通知"
	}
	return ""
}

// deliver takes one claimed row to a final or rescheduled state.
func (d *Dispatcher) deliver(ctx context.Context, n *model.Notification, rc recipient) {
	if err := d.deliverErr(ctx, n, rc); err != nil {
		d.log.Error("deliver notification", "id", n.ID, "err", err)
	}
}

func (d *Dispatcher) deliverErr(ctx context.Context, n *model.Notification, rc recipient) error {
	r, ok := d.cfg.reason(n.Reason)
	if !ok {
		return d.finish(ctx, n, model.NotifyDead, "未配置此类通知："+n.Reason)
	}
	if why := rc.cancelReason(n); why != "" {
		return d.finish(ctx, n, model.NotifyCancelled, why)
	}
	var err error
	if due := d.cfg.afterQuiet(n.Category, d.now()); due.After(d.now()) {
		return d.reschedule(ctx, n, due, "免打扰时段，稍后发送")
	}
	var params map[string]string
	_ = json.Unmarshal([]byte(n.Params), &params)
	var notes []string
	var heldUntil time.Time
	noticeChecked := false
	for _, ch := range r.Channels {
		api := apiOf(ch.Channel)
		if within := time.Duration(r.NoticeOnceMinutes) * time.Minute; within > 0 && ch.Channel != ChannelCustomer && !noticeChecked {
			// Falling back to a notice: one is enough while the patient has
			// not looked (the reply itself is in the mini-program).
			noticeChecked = true
			if at, found := d.recentNotice(ctx, n, within); found {
				return d.finish(ctx, n, model.NotifyCancelled, strings.Join(append(notes,
					"同类通知已于 "+at.In(model.Shanghai).Format("15:04")+" 发出，不再重复"), "; "))
			}
		}
		var to string
		switch ch.Channel {
		case ChannelSubscribe:
			if rc.openID == "" {
				notes = append(notes, "订阅消息：患者没有小程序 openid")
				continue
			}
			if !ch.LongTerm {
				if rc.credits[ch.TemplateID] <= 0 {
					// Known empty when the batch was loaded: no write needed.
					notes = append(notes, "订阅消息：患者未订阅此消息")
					continue
				}
				ok, err := d.takeCredit(ctx, n.PatientID, ch.TemplateID)
				if err != nil {
					return d.retry(ctx, n, "订阅次数："+staffReason(err), false)
				}
				if !ok {
					notes = append(notes, "订阅消息：患者未订阅此消息")
					continue
				}
			}
			to = rc.openID
		case ChannelOATemplate:
			if rc.oaOpenID == "" {
				notes = append(notes, "模板消息：患者未关注公众号")
				continue
			}
			to = rc.oaOpenID
		case ChannelCustomer:
			if rc.oaOpenID == "" {
				notes = append(notes, "客服消息：患者未关注公众号")
				continue
			}
			if !rc.window {
				notes = append(notes, "客服消息：已超出 48 小时时限")
				continue
			}
			ok, err := d.takeWindow(ctx, rc.oaOpenID)
			if err != nil {
				return d.retry(ctx, n, "客服消息时限："+staffReason(err), false)
			}
			if !ok {
				notes = append(notes, "客服消息：时限已过或 5 条已用完")
				continue
			}
			to = rc.oaOpenID
		default:
			notes = append(notes, "未知渠道 "+ch.Channel)
			continue
		}
		if until, held := d.held(ctx, api); held {
			d.giveBack(ctx, n, ch, to)
			if heldUntil.IsZero() || until.Before(heldUntil) {
				heldUntil = until
			}
			notes = append(notes, api+"：已达每日限额")
			continue
		}
		var data map[string]string
		switch ch.Channel {
		case ChannelCustomer:
			data = map[string]string{"content": params["text"]}
		case ChannelSubscribe:
			if data, err = renderSubscribe(ch.Fields, params); err != nil {
				d.returnCredit(ctx, n.PatientID, ch.TemplateID)
				return d.finish(ctx, n, model.NotifyDead, "模板参数不符合要求："+err.Error())
			}
		default:
			data = renderTemplate(ch.Fields, params)
		}
		if err := d.waitRate(ctx, api); err != nil {
			return err
		}
		payload, _ := json.Marshal(map[string]any{"touser": to, "template_id": ch.TemplateID, "page": n.Page, "data": data})
		if ch.Channel != ChannelOATemplate {
			// Mark the row before the request leaves: if this worker dies
			// mid-send, the outcome is unknown and the row is not resent
			// (neither API takes a client message id).
			if ok, err := d.markSending(ctx, n, ch, string(payload)); err != nil || !ok {
				return err // the lease was lost: someone else owns the row now
			}
		} else {
			// A template send carries client_msg_id: if this worker dies, the
			// claim expires and the resend is harmless, so no write is needed
			// before sending; what was sent is recorded with the outcome.
			n.Attempts++
			n.Channel, n.TemplateID, n.Payload = ch.Channel, ch.TemplateID, string(payload)
		}
		var msgID string
		switch ch.Channel {
		case ChannelSubscribe:
			msgID, err = d.send.Subscribe(ctx, to, ch.TemplateID, n.Page, data)
		case ChannelCustomer:
			err = d.send.Customer(ctx, to, data["content"])
		default:
			msgID, err = d.send.Template(ctx, to, ch.TemplateID, fmt.Sprintf("careloop-%d", n.ID), n.Page, data)
		}
		if err == nil {
			d.m.sent.WithLabelValues(n.Reason, ch.Channel).Inc()
			return d.markSent(ctx, n, msgID)
		}
		var se sendError
		if !errors.As(err, &se) {
			return d.retry(ctx, n, staffReason(err), true)
		}
		switch se.Outcome() {
		case wxconfig.OutcomeNoCredit: // the credit is gone: try the next channel
			d.zeroCredit(ctx, n.PatientID, ch.TemplateID)
			notes = append(notes, "订阅消息："+se.Chinese())
			continue
		case wxconfig.OutcomeWindowClosed: // fall back to a notice
			d.closeWindow(ctx, to)
			notes = append(notes, "客服消息："+se.Chinese())
			continue
		case wxconfig.OutcomeNotFollower:
			d.bestEffort("mark unfollowed", d.db.Conn(ctx).Model(&model.Follower{}).Where("open_id = ?", to).Update("subscribed", false))
			notes = append(notes, "模板消息："+se.Chinese())
			continue
		case wxconfig.OutcomeQuotaHeld:
			until := d.hold(ctx, api)
			if until.Before(heldUntil) || heldUntil.IsZero() {
				heldUntil = until
			}
			d.undoAttempt(ctx, n)
			notes = append(notes, api+"："+se.Chinese())
			continue
		case wxconfig.OutcomeMinuteLimit:
			d.undoAttempt(ctx, n)
			next := d.now().Truncate(time.Minute).Add(time.Minute)
			return d.reschedule(ctx, n, next, se.Chinese()+"，下一分钟再发")
		case wxconfig.OutcomeUnknown:
			if ch.Channel == ChannelOATemplate {
				return d.retry(ctx, n, "结果未知，以相同 client_msg_id 重发："+se.Chinese(), true)
			}
			return d.finish(ctx, n, model.NotifyDead, "发送后超时，结果未知；为免重复不再重发")
		case wxconfig.OutcomeRetry, wxconfig.OutcomeRefreshToken:
			d.giveBack(ctx, n, ch, to)
			return d.retry(ctx, n, se.Chinese(), true)
		default: // wxconfig.OutcomeBadRequest: a bug or bad config
			d.giveBack(ctx, n, ch, to)
			d.m.dead.WithLabelValues(n.Reason, ch.Channel).Inc()
			return d.finish(ctx, n, model.NotifyDead, se.Chinese())
		}
	}
	if !heldUntil.IsZero() {
		return d.reschedule(ctx, n, heldUntil, strings.Join(notes, "; "))
	}
	d.m.undeliverable.WithLabelValues(n.Reason).Inc()
	return d.finish(ctx, n, model.NotifyUndeliverable, strings.Join(notes, "; "))
}

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

// bestEffort logs the failure of a write the delivery does not depend on
// (it is redone or corrected later) and reports whether it succeeded.
func (d *Dispatcher) bestEffort(what string, res *gorm.DB) bool {
	if res.Error != nil {
		d.log.Warn("dispatcher: "+what, "err", res.Error)
		return false
	}
	return true
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

func (d *Dispatcher) markSending(ctx context.Context, n *model.Notification, ch ChannelTemplate, payload string) (bool, error) {
	lease := d.now().UTC().Add(d.cfg.Lease)
	res := d.db.Conn(ctx).Model(&model.Notification{}).
		Where("id = ? AND claim_token = ? AND status IN ?", n.ID, n.ClaimToken, []string{model.NotifyClaimed, model.NotifySending}).
		Updates(map[string]any{"status": model.NotifySending, "channel": ch.Channel, "template_id": ch.TemplateID,
			"payload": model.SealText(payload), "attempts": gorm.Expr("attempts + 1"), "lease_until": lease})
	if res.Error != nil {
		return false, res.Error
	}
	n.Attempts++
	n.Channel, n.TemplateID, n.Payload = ch.Channel, ch.TemplateID, payload
	return res.RowsAffected == 1, nil
}

func (d *Dispatcher) undoAttempt(_ context.Context, n *model.Notification) { n.Attempts-- }

// settle writes a row's outcome together with what was (last) sent.
func (d *Dispatcher) settle(ctx context.Context, n *model.Notification, fields map[string]any) error {
	fields["channel"], fields["template_id"], fields["payload"], fields["attempts"] = n.Channel, n.TemplateID, model.SealText(n.Payload), n.Attempts
	fields["claim_token"], fields["lease_until"] = "", nil
	return d.db.Conn(ctx).Model(&model.Notification{}).Where("id = ? AND claim_token = ?", n.ID, n.ClaimToken).Updates(fields).Error
}

// sentResult is a delivery to record.
type sentResult struct {
	n     model.Notification
	msgID string
	at    time.Time
}

// markSent records a delivery: through the committer, which writes many in
// one statement, while Run is running; directly otherwise.
func (d *Dispatcher) markSent(ctx context.Context, n *model.Notification, msgID string) error {
	r := sentResult{n: *n, msgID: msgID, at: d.now().UTC()}
	if d.sentQ != nil {
		d.sentQ <- r
		return nil
	}
	return d.writeSent(ctx, []sentResult{r})
}

// commitSent drains the queue of deliveries, writing up to 128 at a time.
func (d *Dispatcher) commitSent(ctx context.Context, q <-chan sentResult) {
	for r := range q {
		batch := []sentResult{r}
	fill:
		for len(batch) < 128 {
			select {
			case r, ok := <-q:
				if !ok {
					break fill
				}
				batch = append(batch, r)
			case <-time.After(2 * time.Millisecond):
				break fill
			}
		}
		if err := d.writeSent(ctx, batch); err != nil {
			d.log.Error("record deliveries", "count", len(batch), "err", err)
		}
	}
}

// writeSent records deliveries in one statement (CASE per column), each
// row still guarded by its own claim token.
func (d *Dispatcher) writeSent(ctx context.Context, rs []sentResult) error {
	ids := make([]any, 0, len(rs))
	tokenCase := &strings.Builder{}
	tokenCase.WriteString("CASE id")
	var tokenArgs []any
	cols := []string{"msg_id", "attempts", "channel", "template_id", "payload", "sent_at"}
	cases := make(map[string]*strings.Builder, len(cols))
	caseArgs := make(map[string][]any, len(cols))
	for _, c := range cols {
		cases[c] = &strings.Builder{}
		cases[c].WriteString("CASE id")
	}
	for _, r := range rs {
		ids = append(ids, r.n.ID)
		tokenCase.WriteString(" WHEN ? THEN ?")
		tokenArgs = append(tokenArgs, r.n.ID, r.n.ClaimToken)
		vals := []any{r.msgID, r.n.Attempts, r.n.Channel, r.n.TemplateID, model.SealText(r.n.Payload), r.at}
		for i, c := range cols {
			cases[c].WriteString(" WHEN ? THEN ?")
			caseArgs[c] = append(caseArgs[c], r.n.ID, vals[i])
		}
	}
	var set []string
	var args []any
	for _, c := range cols {
		cases[c].WriteString(" END")
		set = append(set, c+" = "+cases[c].String())
		args = append(args, caseArgs[c]...)
	}
	set = append(set, "status = ?", "last_error = ''", "claim_token = ''", "lease_until = NULL")
	args = append(args, model.NotifySent, ids)
	args = append(args, tokenArgs...)
	// id IN (…) lets the primary key find the rows; each row is still
	// guarded by its own claim token.
	sql := "UPDATE notifications SET " + strings.Join(set, ", ") + " WHERE id IN ? AND claim_token = " + tokenCase.String() + " END"
	return d.db.Conn(ctx).Exec(sql, args...).Error
}

func (d *Dispatcher) finish(ctx context.Context, n *model.Notification, status, why string) error {
	return d.settle(ctx, n, map[string]any{"status": status, "last_error": model.Truncate(why, 500)})
}

func (d *Dispatcher) reschedule(ctx context.Context, n *model.Notification, at time.Time, why string) error {
	return d.settle(ctx, n, map[string]any{"status": model.NotifyPending, "due_at": at.UTC(), "last_error": model.Truncate(why, 500)})
}

// retry schedules the next attempt with exponential backoff and jitter, or
// gives up after MaxAttempts.
func (d *Dispatcher) retry(ctx context.Context, n *model.Notification, why string, counted bool) error {
	if counted && n.Attempts >= d.cfg.MaxAttempts {
		d.m.dead.WithLabelValues(n.Reason, n.Channel).Inc()
		return d.finish(ctx, n, model.NotifyDead, fmt.Sprintf("已尝试 %d 次，放弃：%s", n.Attempts, why))
	}
	delay := d.cfg.BackoffBase << max(n.Attempts-1, 0)
	if delay > d.cfg.BackoffMax || delay <= 0 {
		delay = d.cfg.BackoffMax
	}
	delay = delay/2 + time.Duration(mrand.Int64N(int64(delay))) // jitter: 50%–150%
	d.m.retried.WithLabelValues(n.Reason).Inc()
	return d.settle(ctx, n, map[string]any{"status": model.NotifyFailed, "due_at": d.now().UTC().Add(delay), "last_error": model.Truncate(why, 500)})
}

// categoryName names a notice category in Chinese.
var categoryName = map[string]string{
	model.CategoryCare: "关怀提醒", model.CategoryMarketing: "营销", model.CategoryService: "服务", model.CategoryUrgent: "紧急",
}
