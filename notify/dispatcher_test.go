package notify_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"gorm.io/gorm/clause"

	"careloop/coord"
	"careloop/model"
	"careloop/notify"
	"careloop/testenv"
	"careloop/wxconfig"
	"careloop/wxsandbox"
)

const (
	mpApp, oaApp = "wxmp-notify", "wxoa-notify"
	tmplBooking  = "sbx-tmpl-booking-confirmed"
	tmplOA       = "sbx-oa-tmpl-service"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type rig struct {
	db    *model.DB
	sb    *wxsandbox.Sandbox
	wx    *wxconfig.Clients
	d     *notify.Dispatcher
	out   *notify.Outbox
	clk   *clock
	alice uint64 // has a mini-program openid and follows the official account
	ctx   context.Context
	cfg   notify.Config
}

func sandboxTemplates() []wxsandbox.Template {
	var ts []wxsandbox.Template
	for _, r := range notify.DefaultReasons() {
		for _, ch := range r.Channels {
			ts = append(ts, wxsandbox.Template{ID: ch.TemplateID, LongTerm: ch.LongTerm})
		}
	}
	return ts
}

// newRig: a fresh database, a sandbox over httptest, the real SDK, and a
// dispatcher on a fake clock at 10:00 Beijing time.
func newRig(t *testing.T, db *model.DB, timeout time.Duration) *rig {
	t.Helper()
	clk := &clock{t: time.Date(2026, 11, 24, 10, 0, 0, 0, model.Shanghai)}
	sb := wxsandbox.New(wxsandbox.Options{
		Apps: []wxsandbox.App{
			{AppID: mpApp, Secret: "s1", Kind: wxsandbox.MiniProgram},
			{AppID: oaApp, Secret: "s2", Kind: wxsandbox.OfficialAccount},
		},
		Templates: sandboxTemplates(),
	})
	srv := httptest.NewServer(sb.Handler())
	t.Cleanup(srv.Close)
	hc, _ := wxconfig.NewHTTPClient(timeout, srv.URL, nil)
	wxconfig.Install(hc)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	store := coord.NewMemory()
	wx := wxconfig.New(wxconfig.Config{MPAppID: mpApp, MPSecret: "s1", OAAppID: oaApp, OASecret: "s2"}, store, hc, log)
	cfg := notify.DefaultConfig()
	cfg.BackoffBase, cfg.BackoffMax, cfg.MaxAttempts = time.Second, time.Minute, 3
	d := notify.New(db, store, wx, cfg, clk.Now, log)
	r := &rig{db: db, sb: sb, wx: wx, d: d, out: notify.NewOutbox(db, cfg, clk.Now, nil), clk: clk, ctx: context.Background(), cfg: cfg}
	r.alice = r.patient(t, "alice", true)
	return r
}

func (r *rig) patient(t *testing.T, openID string, follows bool) uint64 {
	p := model.Patient{OpenID: &openID, Name: openID, Gender: "unknown"}
	if err := r.db.Gorm().Create(&p).Error; err != nil {
		t.Fatal(err)
	}
	if follows {
		pid := p.ID
		r.db.Gorm().Create(&model.Follower{OpenID: wxsandbox.OAOpenID(openID), PatientID: &pid, Subscribed: true, SubscribedAt: r.clk.Now()})
		r.sb.SetFollower(oaApp, wxsandbox.OAOpenID(openID), true, "")
	}
	return p.ID
}

// grant gives a subscribe credit on both sides, as an "accept" does.
func (r *rig) grant(pid uint64, openID, tmpl string, n int) {
	r.db.Gorm().Clauses(clause.OnConflict{UpdateAll: true}).Create(&model.SubscribeCredit{PatientID: pid, TemplateID: tmpl, Credits: n})
	r.sb.GrantSubscribe(mpApp, openID, tmpl, n)
}

func (r *rig) enqueue(t *testing.T, pid uint64, reason, occurrence string) {
	t.Helper()
	ok, err := r.out.Enqueue(r.ctx, notify.Notice{PatientID: pid, Reason: reason, Occurrence: occurrence,
		Params: map[string]string{"package": "入职体检套餐（含心电图、腹部彩超、甲状腺彩超）", "time": "2026-11-25T08:30:00+08:00", "title": "预约成功", "note": "请空腹"}})
	if err != nil || !ok {
		t.Fatalf("enqueue: %v %v", ok, err)
	}
}

func (r *rig) run(t *testing.T) {
	t.Helper()
	if _, err := r.d.ProcessDue(r.ctx); err != nil {
		t.Fatal(err)
	}
}

func (r *rig) row(t *testing.T, reason, occurrence string, pid uint64) model.Notification {
	t.Helper()
	var n model.Notification
	if err := r.db.Gorm().Where("reason = ? AND patient_id = ? AND dedupe_key LIKE ?", reason, pid, "%:"+occurrence).Take(&n).Error; err != nil {
		t.Fatal(err)
	}
	return n
}

func TestDeliveryPaths(t *testing.T) {
	testenv.ForEachDB(t, func(t *testing.T, db *model.DB) {
		r := newRig(t, db, 300*time.Millisecond)
		t.Run("subscribeWithCredit", func(t *testing.T) {
			r.grant(r.alice, "alice", tmplBooking, 1)
			r.enqueue(t, r.alice, notify.ReasonBookingConfirmed, "b1")
			r.run(t)
			n := r.row(t, notify.ReasonBookingConfirmed, "b1", r.alice)
			if n.Status != model.NotifySent || n.Channel != notify.ChannelSubscribe || n.MsgID == "" || n.SentAt == nil {
				t.Fatalf("%+v", n)
			}
			var c model.SubscribeCredit
			db.Gorm().Where("patient_id = ? AND template_id = ?", r.alice, tmplBooking).Take(&c)
			if c.Credits != 0 {
				t.Fatalf("credit not spent: %d", c.Credits)
			}
			last := r.sb.Delivered()[len(r.sb.Delivered())-1]
			var p struct {
				Data map[string]struct{ Value string } `json:"data"`
			}
			json.Unmarshal(last.Payload, &p)
			if got := p.Data["thing1"].Value; len([]rune(got)) != 20 || !strings.HasSuffix(got, "…") {
				t.Fatalf("a long package name must be shortened to 20 characters: %q", got)
			}
			if p.Data["time2"].Value != "2026-11-25 08:30" {
				t.Fatalf("time field: %q", p.Data["time2"].Value)
			}
		})
		t.Run("noCreditFallsBackToTemplate", func(t *testing.T) {
			r.enqueue(t, r.alice, notify.ReasonBookingConfirmed, "b2")
			r.run(t)
			n := r.row(t, notify.ReasonBookingConfirmed, "b2", r.alice)
			if n.Status != model.NotifySent || n.Channel != notify.ChannelOATemplate {
				t.Fatalf("%+v", n)
			}
		})
		t.Run("noChannelIsUndeliverable", func(t *testing.T) {
			bob := r.patient(t, "bob", false)
			r.enqueue(t, bob, notify.ReasonBookingConfirmed, "b3")
			r.run(t)
			n := r.row(t, notify.ReasonBookingConfirmed, "b3", bob)
			if n.Status != model.NotifyUndeliverable || !strings.Contains(n.LastError, "患者未订阅此消息") || !strings.Contains(n.LastError, "患者未关注公众号") {
				t.Fatalf("%+v", n)
			}
		})
		t.Run("43101SpendsTheCreditAndFallsBack", func(t *testing.T) {
			db.Gorm().Create(&model.SubscribeCredit{PatientID: r.alice, TemplateID: "sbx-tmpl-report-ready", Credits: 2}) // WeChat has none
			r.enqueue(t, r.alice, notify.ReasonReportReady, "r1")
			r.run(t)
			n := r.row(t, notify.ReasonReportReady, "r1", r.alice)
			var c model.SubscribeCredit
			db.Gorm().Where("patient_id = ? AND template_id = ?", r.alice, "sbx-tmpl-report-ready").Take(&c)
			if n.Status != model.NotifySent || n.Channel != notify.ChannelOATemplate || c.Credits != 0 {
				t.Fatalf("%+v credits=%d", n, c.Credits)
			}
		})
		t.Run("busyRetriesWithBackoffThenDies", func(t *testing.T) {
			r.grant(r.alice, "alice", "sbx-tmpl-critical", 0) // long-term: no credit needed
			r.sb.FailNext(wxsandbox.APISubscribeSend, 1, wxsandbox.Fault{ErrCode: -1})
			r.enqueue(t, r.alice, notify.ReasonCriticalValue, "c1")
			r.run(t)
			n := r.row(t, notify.ReasonCriticalValue, "c1", r.alice)
			if n.Status != model.NotifyFailed || n.Attempts != 1 || !n.DueAt.After(r.clk.Now()) {
				t.Fatalf("after -1: %+v", n)
			}
			r.run(t) // not due yet
			if n2 := r.row(t, notify.ReasonCriticalValue, "c1", r.alice); n2.Status != model.NotifyFailed {
				t.Fatalf("retried before its time: %+v", n2)
			}
			r.clk.Add(2 * time.Second)
			r.run(t)
			if n = r.row(t, notify.ReasonCriticalValue, "c1", r.alice); n.Status != model.NotifySent || n.Attempts != 2 {
				t.Fatalf("retry: %+v", n)
			}
			r.sb.FailNext(wxsandbox.APISubscribeSend, 3, wxsandbox.Fault{HTTPStatus: 503})
			r.enqueue(t, r.alice, notify.ReasonCriticalValue, "c2")
			for i := 0; i < 3; i++ {
				r.run(t)
				r.clk.Add(2 * time.Minute)
			}
			if n = r.row(t, notify.ReasonCriticalValue, "c2", r.alice); n.Status != model.NotifyDead || n.Attempts != 3 || !strings.Contains(n.LastError, "已尝试 3 次，放弃") {
				t.Fatalf("max attempts: %+v", n)
			}
		})
		t.Run("40001RefreshesOnceAndSends", func(t *testing.T) {
			before := r.sb.TokenFetches()
			r.sb.FailNext(wxsandbox.APISubscribeSend, 1, wxsandbox.Fault{ErrCode: 40001})
			r.enqueue(t, r.alice, notify.ReasonCriticalValue, "c3")
			r.run(t)
			if n := r.row(t, notify.ReasonCriticalValue, "c3", r.alice); n.Status != model.NotifySent || n.Attempts != 1 {
				t.Fatalf("%+v", n)
			}
			if r.sb.TokenFetches() != before+1 {
				t.Fatalf("token fetches %d -> %d", before, r.sb.TokenFetches())
			}
		})
		t.Run("missingParamIsDeadBeforeCallingWeChat", func(t *testing.T) {
			calls := r.sb.Calls(wxsandbox.APISubscribeSend)
			r.grant(r.alice, "alice", tmplBooking, 1)
			r.out.Enqueue(r.ctx, notify.Notice{PatientID: r.alice, Reason: notify.ReasonBookingConfirmed, Occurrence: "p1"})
			r.run(t)
			n := r.row(t, notify.ReasonBookingConfirmed, "p1", r.alice)
			if n.Status != model.NotifyDead || !strings.Contains(n.LastError, "time2") || r.sb.Calls(wxsandbox.APISubscribeSend) != calls {
				t.Fatalf("%+v", n)
			}
			var c model.SubscribeCredit
			db.Gorm().Where("patient_id = ? AND template_id = ?", r.alice, tmplBooking).Take(&c)
			if c.Credits != 1 {
				t.Fatalf("the credit must be kept: %d", c.Credits)
			}
			db.Gorm().Model(&c).Where("patient_id = ? AND template_id = ?", r.alice, tmplBooking).Update("credits", 0)
		})
		t.Run("badTemplateIsDead", func(t *testing.T) {
			r.sb.FailNext(wxsandbox.APISubscribeSend, 1, wxsandbox.Fault{ErrCode: 40037})
			r.enqueue(t, r.alice, notify.ReasonCriticalValue, "c4")
			r.run(t)
			if n := r.row(t, notify.ReasonCriticalValue, "c4", r.alice); n.Status != model.NotifyDead || !strings.Contains(n.LastError, "微信返回 40037（模板 ID 无效）") {
				t.Fatalf("%+v", n)
			}
		})
		t.Run("45011WaitsForTheNextMinute", func(t *testing.T) {
			r.sb.FailNext(wxsandbox.APISubscribeSend, 1, wxsandbox.Fault{ErrCode: 45011})
			r.enqueue(t, r.alice, notify.ReasonCriticalValue, "c5")
			r.run(t)
			n := r.row(t, notify.ReasonCriticalValue, "c5", r.alice)
			want := r.clk.Now().Truncate(time.Minute).Add(time.Minute)
			if n.Status != model.NotifyPending || n.Attempts != 0 || !n.DueAt.Equal(want.UTC()) {
				t.Fatalf("%+v (want due %s)", n, want)
			}
			r.clk.Add(time.Minute)
			r.run(t)
			if n = r.row(t, notify.ReasonCriticalValue, "c5", r.alice); n.Status != model.NotifySent {
				t.Fatalf("%+v", n)
			}
		})
		t.Run("unknownOutcome", func(t *testing.T) {
			// Subscribe: no client message id, so an unknown outcome is not resent.
			r.sb.FailNext(wxsandbox.APISubscribeSend, 1, wxsandbox.Fault{Delay: time.Second})
			r.enqueue(t, r.alice, notify.ReasonCriticalValue, "c6")
			r.run(t)
			if n := r.row(t, notify.ReasonCriticalValue, "c6", r.alice); n.Status != model.NotifyDead || !strings.Contains(n.LastError, "结果未知") {
				t.Fatalf("subscribe: %+v", n)
			}
			// Template: resent with the same client_msg_id; WeChat keeps one.
			r.sb.FailNext(wxsandbox.APITemplateSend, 1, wxsandbox.Fault{Delay: time.Second})
			r.enqueue(t, r.alice, notify.ReasonBookingConfirmed, "b4")
			r.run(t)
			time.Sleep(800 * time.Millisecond) // the delayed request lands in the sandbox
			n := r.row(t, notify.ReasonBookingConfirmed, "b4", r.alice)
			if n.Status != model.NotifyFailed {
				t.Fatalf("template: %+v", n)
			}
			r.clk.Add(2 * time.Second)
			r.run(t)
			if n = r.row(t, notify.ReasonBookingConfirmed, "b4", r.alice); n.Status != model.NotifySent {
				t.Fatalf("template resend: %+v", n)
			}
			got := 0
			for _, m := range r.sb.Delivered() {
				if m.API == wxsandbox.APITemplateSend && strings.Contains(string(m.Payload), fmt.Sprintf(`"client_msg_id":"careloop-%d"`, n.ID)) {
					got++
				}
			}
			if got != 1 {
				t.Fatalf("template delivered %d times, want 1", got)
			}
		})
		t.Run("45009HoldsTheAPIUntilMidnight", func(t *testing.T) {
			r.sb.FailNext(wxsandbox.APITemplateSend, 1, wxsandbox.Fault{ErrCode: 45009})
			r.enqueue(t, r.alice, notify.ReasonBookingConfirmed, "b5") // no credit: template only
			r.run(t)
			n := r.row(t, notify.ReasonBookingConfirmed, "b5", r.alice)
			midnight := time.Date(2026, 11, 25, 0, 0, 0, 0, model.Shanghai)
			if n.Status != model.NotifyPending || !n.DueAt.Equal(midnight.UTC()) || n.Attempts != 0 {
				t.Fatalf("%+v", n)
			}
			if _, held := r.d.Holds(r.ctx)["template_send"]; !held {
				t.Fatal("the API is not reported as held")
			}
			calls := r.sb.Calls(wxsandbox.APITemplateSend)
			r.enqueue(t, r.alice, notify.ReasonBookingConfirmed, "b6")
			r.run(t)
			if r.sb.Calls(wxsandbox.APITemplateSend) != calls {
				t.Fatal("a held API was called")
			}
			r.clk.Add(14 * time.Hour)
			r.run(t)
			if n = r.row(t, notify.ReasonBookingConfirmed, "b6", r.alice); n.Status != model.NotifySent {
				t.Fatalf("after the reset: %+v", n)
			}
		})
	})
}

func TestQuietHoursConsentAndDedupe(t *testing.T) {
	testenv.ForEachDB(t, func(t *testing.T, db *model.DB) {
		r := newRig(t, db, 2*time.Second)
		r.clk.t = time.Date(2026, 11, 24, 22, 30, 0, 0, model.Shanghai)
		r.enqueue(t, r.alice, notify.ReasonCheckupReminder, "q1")  // care
		r.enqueue(t, r.alice, notify.ReasonBookingConfirmed, "q2") // service
		if n := r.row(t, notify.ReasonCheckupReminder, "q1", r.alice); !n.DueAt.Equal(time.Date(2026, 11, 25, 8, 0, 0, 0, model.Shanghai).UTC()) {
			t.Fatalf("care notice at 22:30 is due %s, want 08:00", n.DueAt.In(model.Shanghai))
		}
		if n := r.row(t, notify.ReasonBookingConfirmed, "q2", r.alice); !n.DueAt.Equal(r.clk.Now().UTC()) {
			t.Fatalf("service notice must go at once: %s", n.DueAt)
		}
		if ok, _ := r.out.Enqueue(r.ctx, notify.Notice{PatientID: r.alice, Reason: notify.ReasonCheckupReminder, Occurrence: "q1"}); ok {
			t.Fatal("the same occurrence was enqueued twice")
		}
		// Opted out of care: the care notice is cancelled; service still goes.
		db.Gorm().Create(&model.NotifyPreference{PatientID: r.alice, Category: model.CategoryCare, OptOut: true})
		r.clk.Add(10 * time.Hour)
		r.run(t)
		if n := r.row(t, notify.ReasonCheckupReminder, "q1", r.alice); n.Status != model.NotifyCancelled {
			t.Fatalf("opted-out care notice: %+v", n)
		}
		if n := r.row(t, notify.ReasonBookingConfirmed, "q2", r.alice); n.Status != model.NotifySent {
			t.Fatalf("service notice: %+v", n)
		}
	})
}

func TestSweepRecoversAbandonedRows(t *testing.T) {
	testenv.ForEachDB(t, func(t *testing.T, db *model.DB) {
		r := newRig(t, db, 2*time.Second)
		past := r.clk.Now().Add(-time.Hour).UTC()
		mk := func(occ, status, channel string) {
			r.enqueue(t, r.alice, notify.ReasonCriticalValue, occ)
			db.Gorm().Model(&model.Notification{}).Where("dedupe_key LIKE ?", "%:"+occ).
				Updates(map[string]any{"status": status, "channel": channel, "lease_until": past, "claim_token": "gone"})
		}
		mk("s1", model.NotifyClaimed, "")
		mk("s2", model.NotifySending, notify.ChannelSubscribe)
		mk("s3", model.NotifySending, notify.ChannelOATemplate)
		r.run(t)
		if n := r.row(t, notify.ReasonCriticalValue, "s1", r.alice); n.Status != model.NotifySent {
			t.Fatalf("a claim never started is delivered: %+v", n)
		}
		if n := r.row(t, notify.ReasonCriticalValue, "s2", r.alice); n.Status != model.NotifyDead || !strings.Contains(n.LastError, "结果未知") {
			t.Fatalf("a subscribe send cut off mid-flight is not resent: %+v", n)
		}
		if n := r.row(t, notify.ReasonCriticalValue, "s3", r.alice); n.Status != model.NotifySent {
			t.Fatalf("a template send cut off mid-flight is resent: %+v", n)
		}
	})
}

// Two dispatchers sharing one coordinator keep together to the global rate:
// nine sends at three a second need three one-second windows.
func TestGlobalRateIsShared(t *testing.T) {
	db := testenv.OpenDB(t, "sqlite")
	r := newRig(t, db, 2*time.Second)
	cfg := r.cfg
	cfg.RatePerSecond = 3
	store := coord.NewMemory()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	a := notify.New(db, store, r.wx, cfg, r.clk.Now, log)
	b := notify.New(db, store, r.wx, cfg, r.clk.Now, log)
	for i := 0; i < 9; i++ {
		r.enqueue(t, r.alice, notify.ReasonBookingConfirmed, fmt.Sprintf("rate-%d", i))
	}
	start := time.Now()
	var wg sync.WaitGroup
	for _, d := range []*notify.Dispatcher{a, b} {
		wg.Add(1)
		go func() { defer wg.Done(); d.ProcessDue(r.ctx) }()
	}
	wg.Wait()
	if n := len(r.sb.Delivered()); n != 9 {
		t.Fatalf("delivered %d of 9", n)
	}
	if took := time.Since(start); took < 2*time.Second {
		t.Fatalf("nine sends at 3/s took %s: the rate was not shared", took)
	}
}

// TestCustomerChannel: a doctor's reply goes as a customer-service message
// while WeChat's window is open (our count and WeChat's agree), falls back
// to a notice when it is closed or used up, retries a busy WeChat with the
// window's message given back, does not resend an unknown outcome, and
// sends one notice per 10 minutes.
func TestCustomerChannel(t *testing.T) {
	testenv.ForEachDB(t, func(t *testing.T, db *model.DB) {
		r := newRig(t, db, 300*time.Millisecond)
		oaID := wxsandbox.OAOpenID("alice")
		openWindow := func() {
			now := r.clk.Now().UTC()
			db.Gorm().Model(&model.Follower{}).Where("open_id = ?", oaID).Updates(map[string]any{"window_opened_at": now, "window_replies": 0})
			r.sb.OpenWindow(oaApp, oaID)
		}
		replies := func() int {
			var f model.Follower
			db.Gorm().Where("open_id = ?", oaID).Take(&f)
			return f.WindowReplies
		}
		reply := func(occ string) {
			t.Helper()
			if _, err := r.out.Enqueue(r.ctx, notify.Notice{PatientID: r.alice, Reason: notify.ReasonDoctorReply, Occurrence: occ,
				Params: map[string]string{"title": "李医生回复了您的咨询", "note": "建议复查", "text": "李医生：建议复查血糖"}}); err != nil {
				t.Fatal(err)
			}
		}
		customerSends := func() int { return r.sb.Calls(wxsandbox.APICustomSend) }
		openWindow()

		reply("m1")
		r.run(t)
		if n := r.row(t, notify.ReasonDoctorReply, "m1", r.alice); n.Status != model.NotifySent || n.Channel != notify.ChannelCustomer || replies() != 1 {
			t.Fatalf("inside the window: %+v, window replies %d", n, replies())
		}

		// WeChat busy: retried later, the window's message given back meanwhile.
		r.sb.FailNext(wxsandbox.APICustomSend, 1, wxsandbox.Fault{ErrCode: -1})
		reply("m2")
		r.run(t)
		if n := r.row(t, notify.ReasonDoctorReply, "m2", r.alice); n.Status != model.NotifyFailed || replies() != 1 {
			t.Fatalf("busy: %+v, window replies %d", n, replies())
		}
		r.clk.Add(2 * time.Second)
		r.run(t)
		if n := r.row(t, notify.ReasonDoctorReply, "m2", r.alice); n.Status != model.NotifySent || n.Channel != notify.ChannelCustomer || replies() != 2 {
			t.Fatalf("busy, retried: %+v, window replies %d", n, replies())
		}

		// A timeout after sending: unknown outcome, not resent (no client id).
		r.sb.FailNext(wxsandbox.APICustomSend, 1, wxsandbox.Fault{Delay: time.Second})
		reply("m3")
		r.run(t)
		time.Sleep(800 * time.Millisecond)
		calls := customerSends()
		r.clk.Add(time.Minute)
		r.run(t)
		if n := r.row(t, notify.ReasonDoctorReply, "m3", r.alice); n.Status != model.NotifyDead || !strings.Contains(n.LastError, "结果未知") || customerSends() != calls {
			t.Fatalf("unknown outcome: %+v", n)
		}

		// WeChat says the count is used up (45047): a template notice instead,
		// and no customer attempt until the patient writes again.
		r.sb.FailNext(wxsandbox.APICustomSend, 1, wxsandbox.Fault{ErrCode: 45047})
		reply("m4")
		r.run(t)
		if n := r.row(t, notify.ReasonDoctorReply, "m4", r.alice); n.Status != model.NotifySent || n.Channel != notify.ChannelOATemplate || replies() != 5 {
			t.Fatalf("45047: %+v, window replies %d", n, replies())
		}
		calls = customerSends()
		r.clk.Add(11 * time.Minute)
		reply("m5")
		r.run(t)
		if n := r.row(t, notify.ReasonDoctorReply, "m5", r.alice); n.Status != model.NotifySent || n.Channel != notify.ChannelOATemplate || customerSends() != calls {
			t.Fatalf("used-up window: %+v, customer calls %d -> %d", n, calls, customerSends())
		}
		// Within 10 minutes of that notice, another reply is not a second notice.
		reply("m6")
		r.run(t)
		if n := r.row(t, notify.ReasonDoctorReply, "m6", r.alice); n.Status != model.NotifyCancelled || !strings.Contains(n.LastError, "不再重复") {
			t.Fatalf("second notice: %+v", n)
		}

		// The window, by our count, closes 48 hours after the patient's message.
		openWindow()
		r.clk.Add(49 * time.Hour)
		calls = customerSends()
		reply("m7")
		r.run(t)
		if n := r.row(t, notify.ReasonDoctorReply, "m7", r.alice); n.Status != model.NotifySent || n.Channel != notify.ChannelOATemplate || customerSends() != calls {
			t.Fatalf("after 48 hours: %+v", n)
		}
	})
}

// TestCustomerWindowRace: three dispatchers deliver twelve replies at once
// to one follower: exactly five go as customer messages, and WeChat never
// has to refuse a sixth (our count decides before the request leaves).
func TestCustomerWindowRace(t *testing.T) {
	testenv.ForEachDB(t, func(t *testing.T, db *model.DB) {
		r := newRig(t, db, 2*time.Second)
		oaID := wxsandbox.OAOpenID("alice")
		db.Gorm().Model(&model.Follower{}).Where("open_id = ?", oaID).Updates(map[string]any{"window_opened_at": r.clk.Now().UTC(), "window_replies": 0})
		r.sb.OpenWindow(oaApp, oaID)
		for i := 0; i < 12; i++ {
			if _, err := r.out.Enqueue(r.ctx, notify.Notice{PatientID: r.alice, Reason: notify.ReasonDoctorReply, Occurrence: fmt.Sprint("race-", i),
				Params: map[string]string{"title": "医生回复", "note": "回复", "text": fmt.Sprint("回复 ", i)}}); err != nil {
				t.Fatal(err)
			}
		}
		log := slog.New(slog.NewTextHandler(io.Discard, nil))
		store := coord.NewMemory()
		var wg sync.WaitGroup
		for i := 0; i < 3; i++ {
			d := notify.New(db, store, r.wx, r.cfg, r.clk.Now, log)
			wg.Add(1)
			go func() { defer wg.Done(); d.ProcessDue(r.ctx) }()
		}
		wg.Wait()
		ok, refused := 0, 0
		for _, m := range r.sb.Sent() {
			if m.API != wxsandbox.APICustomSend {
				continue
			}
			if m.ErrCode == 0 {
				ok++
			} else if m.ErrCode == wxsandbox.CodeWindowCountUsed {
				refused++
			}
		}
		var customer int64
		db.Gorm().Model(&model.Notification{}).Where("reason = ? AND status = ? AND channel = ?", notify.ReasonDoctorReply, model.NotifySent, notify.ChannelCustomer).Count(&customer)
		if ok != 5 || refused != 0 || customer != 5 {
			t.Fatalf("customer messages: %d delivered, %d refused by WeChat, %d rows; want 5, 0, 5", ok, refused, customer)
		}
	})
}

// TestRepliesGoOutInOrder: a doctor's five quick replies reach WeChat in
// the order written, one at a time, while three dispatchers race and WeChat
// answers "system busy" between them (a retried reply still goes before
// the next).
func TestRepliesGoOutInOrder(t *testing.T) {
	testenv.ForEachDB(t, func(t *testing.T, db *model.DB) {
		r := newRig(t, db, 2*time.Second)
		oaID := wxsandbox.OAOpenID("alice")
		db.Gorm().Model(&model.Follower{}).Where("open_id = ?", oaID).Updates(map[string]any{"window_opened_at": r.clk.Now().UTC(), "window_replies": 0})
		r.sb.OpenWindow(oaApp, oaID)
		for i := 1; i <= 5; i++ {
			if _, err := r.out.Enqueue(r.ctx, notify.Notice{PatientID: r.alice, Reason: notify.ReasonDoctorReply, Occurrence: fmt.Sprint("quick-", i),
				Params: map[string]string{"title": "医生回复", "note": "回复", "text": fmt.Sprint("第", i, "条")}}); err != nil {
				t.Fatal(err)
			}
		}
		log := slog.New(slog.NewTextHandler(io.Discard, nil))
		store := coord.NewMemory()
		var ds []*notify.Dispatcher
		for i := 0; i < 3; i++ {
			ds = append(ds, notify.New(db, store, r.wx, r.cfg, r.clk.Now, log))
		}
		delivered := func() []string {
			var out []string
			for _, m := range r.sb.Sent() {
				if m.API == wxsandbox.APICustomSend && m.ErrCode == 0 {
					var p struct {
						Text struct{ Content string } `json:"text"`
					}
					_ = json.Unmarshal(m.Payload, &p)
					out = append(out, p.Text.Content)
				}
			}
			return out
		}
		// WeChat is busy at the first attempt and again at the fourth
		// (reply 1, then reply 3): the attempts between pass.
		busy, pass := wxsandbox.Fault{ErrCode: -1}, wxsandbox.Fault{Delay: time.Millisecond}
		r.sb.FailNext(wxsandbox.APICustomSend, 1, busy)
		r.sb.FailNext(wxsandbox.APICustomSend, 2, pass)
		r.sb.FailNext(wxsandbox.APICustomSend, 1, busy)
		for round := 0; round < 20 && len(delivered()) < 5; round++ {
			var wg sync.WaitGroup
			for _, d := range ds {
				wg.Add(1)
				go func() { defer wg.Done(); d.ProcessDue(r.ctx) }()
			}
			wg.Wait()
			r.clk.Add(3 * time.Second) // past the retry's backoff
		}
		got := delivered()
		want := []string{"第1条", "第2条", "第3条", "第4条", "第5条"}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("WeChat received %v, want %v", got, want)
		}
		var busyAnswers int
		for _, m := range r.sb.Sent() {
			if m.API == wxsandbox.APICustomSend && m.ErrCode == -1 {
				busyAnswers++
			}
		}
		if busyAnswers != 2 {
			t.Fatalf("the faults did not happen: %d busy answers", busyAnswers)
		}
	})
}

// TestOneNoticeUnderRace: outside WeChat's window, replies in several
// conversations written at the same moment and three dispatchers racing
// make exactly one "doctor replied" notice; the rest are cancelled.
func TestOneNoticeUnderRace(t *testing.T) {
	testenv.ForEachDB(t, func(t *testing.T, db *model.DB) {
		r := newRig(t, db, 2*time.Second)
		// One reply can take the subscribe channel, the others the template.
		r.grant(r.alice, "alice", "sbx-tmpl-doctor-reply", 1)
		for i := 0; i < 6; i++ {
			if _, err := r.out.Enqueue(r.ctx, notify.Notice{PatientID: r.alice, Reason: notify.ReasonDoctorReply, Occurrence: fmt.Sprint("conv-", i),
				Params: map[string]string{"title": "医生回复了您的咨询", "note": "请查看", "text": fmt.Sprint("回复 ", i)}}); err != nil {
				t.Fatal(err)
			}
		}
		log := slog.New(slog.NewTextHandler(io.Discard, nil))
		store := coord.NewMemory()
		var wg sync.WaitGroup
		start := make(chan struct{})
		cfg := r.cfg
		cfg.Batch = 1 // claims interleave between the dispatchers
		for i := 0; i < 3; i++ {
			d := notify.New(db, store, r.wx, cfg, r.clk.Now, log)
			wg.Add(1)
			go func() { defer wg.Done(); <-start; d.ProcessDue(r.ctx) }()
		}
		close(start)
		wg.Wait()
		var sent, cancelled int64 // (each dispatcher claims one row at a time: cfg.Batch below)
		db.Gorm().Model(&model.Notification{}).Where("reason = ? AND status = ?", notify.ReasonDoctorReply, model.NotifySent).Count(&sent)
		db.Gorm().Model(&model.Notification{}).Where("reason = ? AND status = ?", notify.ReasonDoctorReply, model.NotifyCancelled).Count(&cancelled)
		notices := 0
		for _, m := range r.sb.Delivered() {
			if m.API == wxsandbox.APISubscribeSend || m.API == wxsandbox.APITemplateSend {
				notices++
			}
		}
		if sent != 1 || cancelled != 5 || notices != 1 {
			t.Fatalf("notices: %d sent rows, %d cancelled, %d reached WeChat; want 1, 5, 1", sent, cancelled, notices)
		}
	})
}
