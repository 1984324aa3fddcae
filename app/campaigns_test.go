package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"careloop/app"
	"careloop/model"
	"careloop/testenv"
	"careloop/wxsandbox"
)

// forEachIdleBackend runs fn on SQLite and on MariaDB with no background
// loops: the test drives the workers (and races them where it says so).
func forEachIdleBackend(t *testing.T, mutate func(*app.Config), fn func(t *testing.T, a *app.App)) {
	for _, b := range testenv.Backends() {
		t.Run(b, func(t *testing.T) { fn(t, newIdleApp(t, b, mutate)) })
	}
}

// noQuiet turns the quiet hours off (the tests run at any hour).
func noQuiet(c *app.Config) { c.QuietHours = "" }

// campaignPatient logs a patient in and sets them up: marketing consent,
// a credit for the marketing template, the tag.
func campaignPatient(t *testing.T, a *app.App, name string, tagID uint64, consent, credit bool) (string, uint64) {
	t.Helper()
	h := a.Router
	tok, pid := login(t, h, "dev:"+name)
	if consent {
		if r := call(t, h, "POST", "/api/mp/me/consents", tok, map[string]any{"kind": "marketing", "version": "2026-11", "granted": true}); r.Status != 200 {
			t.Fatalf("consent: %d %s", r.Status, r.Raw)
		}
	}
	if credit {
		if r := call(t, h, "POST", "/api/mp/subscriptions", tok, map[string]any{"results": map[string]string{"sbx-tmpl-marketing": "accept"}}); r.Status != 200 {
			t.Fatalf("subscribe: %d %s", r.Status, r.Raw)
		}
	}
	if err := a.DB.Gorm().Create(&model.PatientTag{PatientID: pid, TagID: tagID, AssignedAt: time.Now()}).Error; err != nil {
		t.Fatal(err)
	}
	return tok, pid
}

// runCampaign starts campaign id and drives the workers until its messages
// have gone: the campaign worker prepares, the dispatcher sends.
func runCampaign(t *testing.T, a *app.App, tok string, id uint64) response {
	t.Helper()
	ctx := context.Background()
	if r := call(t, a.Router, "POST", fmt.Sprintf("/api/admin/campaigns/%d/start", id), tok, nil); r.Status != 200 || r.Body["status"] != "scheduled" {
		t.Fatalf("start: %d %s", r.Status, r.Raw)
	}
	for i := 0; i < 5; i++ {
		if _, err := a.Campaigns.Work(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := a.Dispatcher.ProcessDue(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return call(t, a.Router, "GET", fmt.Sprintf("/api/admin/campaigns/%d", id), tok, nil)
}

// subscribeSends counts the marketing subscribe messages the sandbox
// accepted, per openid.
func subscribeSends(a *app.App) map[string]int {
	out := map[string]int{}
	for _, m := range a.Sandbox.Delivered() {
		if m.API != wxsandbox.APISubscribeSend {
			continue
		}
		var p struct {
			TemplateID string `json:"template_id"`
		}
		_ = json.Unmarshal(m.Payload, &p)
		if p.TemplateID == "sbx-tmpl-marketing" {
			out[m.ToUser]++
		}
	}
	return out
}

// A campaign reaches, once, exactly the segment's patients who agreed to
// marketing, did not opt out, hold a credit for its template and are under
// the fatigue cap; every other one is counted by reason. Each recipient
// gets one coupon; A/B variants split the recipients; a booking after the
// message is a conversion of the variant they received. Pause holds the
// messages not yet sent, resume sends them, cancel stops them for good; a
// template message is refused; the cap is shared by every campaign.
func TestCampaignReachesTheRightPatientsOnce(t *testing.T) {
	forEachIdleBackend(t, noQuiet, func(t *testing.T, a *app.App) {
		h := a.Router
		db := a.DB.Gorm()
		admin := staffLogin(t, h, app.DemoAdminUser, app.DemoAdminPassword)
		mkt := newStaffOnce(t, a, admin, "mkt", "marketing")
		doc := newStaffOnce(t, a, admin, "doc", "doctor")
		a.Campaigns.Batch = 3 // several batches
		tag := call(t, h, "POST", "/api/admin/tags", mkt, map[string]any{"name": "活动对象", "category": "basic"})
		tagID := uint64(tag.Body["id"].(float64))
		toks := map[uint64]string{}
		var good []uint64
		for i := 0; i < 5; i++ {
			tok, pid := campaignPatient(t, a, fmt.Sprintf("camp-ok-%d", i), tagID, true, true)
			good = append(good, pid)
			toks[pid] = tok
		}
		_, noCredit := campaignPatient(t, a, "camp-nocredit", tagID, true, false)
		_, noConsent := campaignPatient(t, a, "camp-noconsent", tagID, false, true)
		optTok, optedOut := campaignPatient(t, a, "camp-optout", tagID, true, true)
		if r := call(t, h, "PUT", "/api/mp/notification-preferences", optTok, map[string]any{"marketing": false}); r.Status != 200 {
			t.Fatalf("opt out: %d %s", r.Status, r.Raw)
		}
		_, capped := campaignPatient(t, a, "camp-capped", tagID, true, true)
		for i := 0; i < 2; i++ { // two marketing messages this week already
			db.Create(&model.CampaignRecipient{CampaignID: uint64(9000 + i), PatientID: capped, Variant: "A", CreatedAt: time.Now().Add(-time.Duration(i+1) * 24 * time.Hour)})
		}
		reward := model.Reward{Name: "体检立减50元", Kind: model.RewardCoupon, CouponValueFen: 5000, Active: true}
		db.Create(&reward)
		seg := call(t, h, "POST", "/api/admin/segments", mkt, map[string]any{"name": "活动分群", "purpose": "marketing", "conditions": all(cond("tag", "any", []uint64{tagID}))})
		sid := uint64(seg.Body["id"].(float64))
		pkg := anyPackage(t, a)
		body := map[string]any{"name": "年度体检季", "segment_id": sid, "channel": "subscribe", "template_id": "sbx-tmpl-marketing",
			"data":             map[string]string{"thing1": "年度体检季", "thing2": "黄金会员专享优惠"},
			"variant_b":        map[string]any{"data": map[string]string{"thing1": "体检限时优惠", "thing2": "预约即送体检券"}},
			"coupon_reward_id": reward.ID, "goal": map[string]any{"kind": "booking", "package_id": pkg.ID, "days": 14}}

		// Refusals.
		tpl := map[string]any{}
		for k, v := range body {
			tpl[k] = v
		}
		tpl["channel"] = "template"
		if r := call(t, h, "POST", "/api/admin/campaigns", mkt, tpl); r.Status != 422 || r.ErrCode() != "template_not_allowed" {
			t.Fatalf("template channel: %d %s", r.Status, r.Raw)
		}
		tpl["channel"], tpl["template_id"] = "subscribe", "sbx-tmpl-booking-confirmed"
		if r := call(t, h, "POST", "/api/admin/campaigns", mkt, tpl); r.Status != 422 || r.ErrCode() != "invalid_campaign" {
			t.Fatalf("a service template for marketing: %d %s", r.Status, r.Raw)
		}
		if r := call(t, h, "POST", "/api/admin/campaigns", doc, body); r.Status != 403 {
			t.Fatalf("a doctor runs campaigns: %d", r.Status)
		}
		care := call(t, h, "POST", "/api/admin/segments", doc, map[string]any{"name": "异常复查", "purpose": "care", "conditions": all(cond("report.abnormal", "eq", true))})
		tpl["template_id"], tpl["segment_id"] = "sbx-tmpl-marketing", care.Body["id"]
		if r := call(t, h, "POST", "/api/admin/campaigns", mkt, tpl); r.Status != 422 || r.ErrCode() != "health_data_not_allowed" {
			t.Fatalf("a campaign to a care segment: %d %s", r.Status, r.Raw)
		}

		c := call(t, h, "POST", "/api/admin/campaigns", mkt, body)
		if c.Status != 201 || c.Body["status"] != "draft" || len(c.Body["variants"].([]any)) != 2 {
			t.Fatalf("create: %d %s", c.Status, c.Raw)
		}
		cid := uint64(c.Body["id"].(float64))
		got := runCampaign(t, a, mkt, cid)
		counts := got.Body["counts"].(map[string]any)
		skipped := counts["skipped"].(map[string]any)
		if got.Body["status"] != "done" || counts["recipients"] != 9.0 || counts["sent"] != 5.0 || counts["queued"] != 0.0 || counts["failed"] != 0.0 ||
			skipped["no_consent"] != 1.0 || skipped["no_credit"] != 1.0 || skipped["opted_out"] != 1.0 || skipped["capped"] != 1.0 {
			t.Fatalf("campaign: %s", got.Raw)
		}
		sends := subscribeSends(a)
		var openOf = func(pid uint64) string {
			var p model.Patient
			db.Where("id = ?", pid).Take(&p)
			return *p.OpenID
		}
		for _, pid := range good {
			if sends[openOf(pid)] != 1 {
				t.Fatalf("patient %d got %d messages", pid, sends[openOf(pid)])
			}
		}
		for _, pid := range []uint64{noCredit, noConsent, optedOut, capped} {
			if sends[openOf(pid)] != 0 {
				t.Fatalf("skipped patient %d got a message", pid)
			}
		}
		reached := counts["reached"].(map[string]any)
		if reached["A"].(float64)+reached["B"].(float64) != 5 {
			t.Fatalf("variants: %v", reached)
		}
		var coupons []model.Coupon
		db.Where("redeem_key LIKE ?", fmt.Sprintf("campaign:%d:%%", cid)).Find(&coupons)
		var holders []uint64
		for _, q := range coupons {
			holders = append(holders, q.PatientID)
		}
		sort.Slice(holders, func(i, j int) bool { return holders[i] < holders[j] })
		if !slices.Equal(holders, ids(good...)) {
			t.Fatalf("coupons went to %v", holders)
		}
		// The message opens the mini-program with the campaign's id; opening it is recorded once.
		for _, m := range a.Sandbox.Delivered() {
			if m.API == wxsandbox.APISubscribeSend && strings.Contains(string(m.Payload), "sbx-tmpl-marketing") &&
				!strings.Contains(string(m.Payload), fmt.Sprintf("campaign=%d", cid)) {
				t.Fatalf("the message's page does not name the campaign: %s", m.Payload)
			}
		}
		for i := 0; i < 2; i++ {
			if r := call(t, h, "POST", fmt.Sprintf("/api/mp/campaigns/%d/opened", cid), toks[good[1]], nil); r.Status != 204 {
				t.Fatalf("opened: %d %s", r.Status, r.Raw)
			}
		}
		if r := call(t, h, "POST", fmt.Sprintf("/api/mp/campaigns/%d/opened", cid), optTok, nil); r.Status != 404 {
			t.Fatalf("a patient the campaign skipped opened it: %d", r.Status)
		}
		if o := call(t, h, "GET", fmt.Sprintf("/api/admin/campaigns/%d", cid), mkt, nil).Body["counts"].(map[string]any)["opened"]; o != 1.0 {
			t.Fatalf("opened: %v", o)
		}
		if got, r := preview(t, a, mkt, "marketing", all(cond("campaign.opened", "eq", true))); !slices.Equal(got, ids(good[1])) {
			t.Fatalf("opened segment: %v %s", got, r.Raw)
		}
		// Working again sends nothing more.
		if _, err := a.Campaigns.Work(context.Background()); err != nil {
			t.Fatal(err)
		}
		if r := call(t, h, "POST", fmt.Sprintf("/api/admin/campaigns/%d/start", cid), mkt, nil); r.Status != 409 || r.ErrCode() != "campaign_state" {
			t.Fatalf("started twice: %d %s", r.Status, r.Raw)
		}
		if n := len(subscribeSends(a)); n != 5 {
			t.Fatalf("%d patients reached after a second round", n)
		}

		// A recipient books the goal's package: a conversion of their variant.
		booker := good[0]
		var rec model.CampaignRecipient
		db.Where("campaign_id = ? AND patient_id = ?", cid, booker).Take(&rec)
		sl := testSlot(t, a, "06:40", 5)
		if r := bookCall(t, h, toks[booker], "camp-book", map[string]any{"package_id": pkg.ID, "slot_id": sl.ID}); r.Status != 201 {
			t.Fatalf("book: %d %s", r.Status, r.Raw)
		}
		if _, err := a.Campaigns.Work(context.Background()); err != nil {
			t.Fatal(err)
		}
		conv := call(t, h, "GET", fmt.Sprintf("/api/admin/campaigns/%d", cid), mkt, nil).Body["counts"].(map[string]any)["conversions"].(map[string]any)
		if conv["total"] != 1.0 || conv[rec.Variant] != 1.0 {
			t.Fatalf("conversions: %v (the booker had variant %s)", conv, rec.Variant)
		}
		if got, r := preview(t, a, mkt, "marketing", all(cond("campaign.converted", "any", []uint64{cid}))); !slices.Equal(got, ids(booker)) {
			t.Fatalf("converted segment: %v %s", got, r.Raw)
		}

		// A second campaign: pause holds it, resume sends it.
		for _, pid := range good {
			call(t, h, "POST", "/api/mp/subscriptions", toks[pid], map[string]any{"results": map[string]string{"sbx-tmpl-marketing": "accept"}})
		}
		body2 := map[string]any{"name": "第二波", "segment_id": sid, "channel": "subscribe", "template_id": "sbx-tmpl-marketing",
			"data": map[string]string{"thing1": "第二波活动"}, "goal": map[string]any{"kind": "booking", "days": 7}}
		c2 := call(t, h, "POST", "/api/admin/campaigns", mkt, body2)
		cid2 := uint64(c2.Body["id"].(float64))
		call(t, h, "POST", fmt.Sprintf("/api/admin/campaigns/%d/start", cid2), mkt, nil)
		if _, err := a.Campaigns.Work(context.Background()); err != nil {
			t.Fatal(err)
		}
		if p := call(t, h, "POST", fmt.Sprintf("/api/admin/campaigns/%d/pause", cid2), mkt, nil); p.Status != 200 || p.Body["status"] != "paused" {
			t.Fatalf("pause: %d %s", p.Status, p.Raw)
		}
		if _, err := a.Dispatcher.ProcessDue(context.Background()); err != nil {
			t.Fatal(err)
		}
		if n := sumSends(subscribeSends(a)); n != 5 {
			t.Fatalf("a paused campaign sent: %d", n-5)
		}
		paused := call(t, h, "GET", fmt.Sprintf("/api/admin/campaigns/%d", cid2), mkt, nil)
		if paused.Body["counts"].(map[string]any)["queued"] != 5.0 {
			t.Fatalf("paused counts: %s", paused.Raw)
		}
		if r := call(t, h, "POST", fmt.Sprintf("/api/admin/campaigns/%d/resume", cid2), mkt, nil); r.Status != 200 || r.Body["status"] != "sending" {
			t.Fatalf("resume: %d %s", r.Status, r.Raw)
		}
		done2 := runCampaignRounds(t, a, mkt, cid2)
		if done2.Body["status"] != "done" || done2.Body["counts"].(map[string]any)["sent"] != 5.0 || sumSends(subscribeSends(a)) != 10 {
			t.Fatalf("after resume: %s", done2.Raw)
		}

		// Last touch: a patient reached by both campaigns books the first
		// one's package after the second: the second converts, not the first.
		sl2 := testSlot(t, a, "06:50", 5)
		if r := bookCall(t, h, toks[good[1]], "camp-book-2", map[string]any{"package_id": pkg.ID, "slot_id": sl2.ID}); r.Status != 201 {
			t.Fatalf("book: %d %s", r.Status, r.Raw)
		}
		runCampaignRounds(t, a, mkt, cid2)
		conv1 := call(t, h, "GET", fmt.Sprintf("/api/admin/campaigns/%d", cid), mkt, nil).Body["counts"].(map[string]any)["conversions"].(map[string]any)
		conv2 := call(t, h, "GET", fmt.Sprintf("/api/admin/campaigns/%d", cid2), mkt, nil).Body["counts"].(map[string]any)["conversions"].(map[string]any)
		if conv1["total"] != 1.0 || conv2["total"] != 1.0 {
			t.Fatalf("last touch: first campaign %v, second %v", conv1, conv2)
		}

		// A third campaign this week: the cap (2 a week) is shared.
		for _, pid := range good {
			call(t, h, "POST", "/api/mp/subscriptions", toks[pid], map[string]any{"results": map[string]string{"sbx-tmpl-marketing": "accept"}})
		}
		body2["name"] = "第三波"
		c3 := call(t, h, "POST", "/api/admin/campaigns", mkt, body2)
		got3 := runCampaign(t, a, mkt, uint64(c3.Body["id"].(float64)))
		if sk := got3.Body["counts"].(map[string]any)["skipped"].(map[string]any); sk["capped"] != 6.0 || got3.Body["counts"].(map[string]any)["sent"] != 0.0 {
			t.Fatalf("third campaign: %s", got3.Raw)
		}
		// A looser cap lets a fourth through; cancelled before sending, it never sends.
		if r := call(t, h, "PUT", "/api/admin/campaigns/fatigue", mkt, map[string]any{"per_week": 3, "per_month": 6}); r.Status != 200 {
			t.Fatalf("cap: %d %s", r.Status, r.Raw)
		}
		body2["name"] = "第四波"
		c4 := call(t, h, "POST", "/api/admin/campaigns", mkt, body2)
		cid4 := uint64(c4.Body["id"].(float64))
		call(t, h, "POST", fmt.Sprintf("/api/admin/campaigns/%d/start", cid4), mkt, nil)
		if _, err := a.Campaigns.Work(context.Background()); err != nil {
			t.Fatal(err)
		}
		if r := call(t, h, "POST", fmt.Sprintf("/api/admin/campaigns/%d/cancel", cid4), mkt, nil); r.Status != 200 || r.Body["status"] != "cancelled" {
			t.Fatalf("cancel: %d %s", r.Status, r.Raw)
		}
		got4 := runCampaignRounds(t, a, mkt, cid4)
		if got4.Body["counts"].(map[string]any)["cancelled"] != 6.0 || sumSends(subscribeSends(a)) != 10 {
			t.Fatalf("cancelled campaign: %s (sends %d)", got4.Raw, sumSends(subscribeSends(a)))
		}
		if r := call(t, h, "POST", fmt.Sprintf("/api/admin/campaigns/%d/resume", cid4), mkt, nil); r.Status != 409 {
			t.Fatalf("resumed a cancelled campaign: %d", r.Status)
		}
	})
}

func runCampaignRounds(t *testing.T, a *app.App, tok string, id uint64) response {
	t.Helper()
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		if _, err := a.Dispatcher.ProcessDue(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := a.Campaigns.Work(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return call(t, a.Router, "GET", fmt.Sprintf("/api/admin/campaigns/%d", id), tok, nil)
}

func sumSends(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// Preparing is resumable and never reaches anyone twice: workers racing
// on one campaign, one of them killed mid-preparation, leave exactly one
// recipient row and one message per patient.
func TestCampaignPreparationResumesWithoutDoubles(t *testing.T) {
	forEachIdleBackend(t, noQuiet, func(t *testing.T, a *app.App) {
		h := a.Router
		db := a.DB.Gorm()
		admin := staffLogin(t, h, app.DemoAdminUser, app.DemoAdminPassword)
		mkt := newStaffOnce(t, a, admin, "mkt", "marketing")
		tag := call(t, h, "POST", "/api/admin/tags", mkt, map[string]any{"name": "大批量", "category": "basic"})
		tagID := uint64(tag.Body["id"].(float64))
		const n = 60
		pids, _ := followingPatients(t, a, "bulk", n, tagID, false)
		now := time.Now()
		for _, pid := range pids {
			open := fmt.Sprintf("mp-bulk-%d", pid)
			db.Model(&model.Patient{}).Where("id = ?", pid).Update("open_id", open)
			db.Create(&model.Consent{PatientID: pid, Kind: model.ConsentMarketing, Version: "2026-11", Granted: true, CreatedAt: now})
			db.Create(&model.SubscribeCredit{PatientID: pid, TemplateID: "sbx-tmpl-marketing", Credits: 1, UpdatedAt: now})
			a.Sandbox.GrantSubscribe(a.Cfg.MPAppID, open, "sbx-tmpl-marketing", 1)
		}
		seg := call(t, h, "POST", "/api/admin/segments", mkt, map[string]any{"name": "大批量", "purpose": "marketing", "conditions": all(cond("tag", "any", []uint64{tagID}))})
		c := call(t, h, "POST", "/api/admin/campaigns", mkt, map[string]any{"name": "大批量", "segment_id": seg.Body["id"], "channel": "subscribe",
			"template_id": "sbx-tmpl-marketing", "data": map[string]string{"thing1": "批量"}})
		cid := uint64(c.Body["id"].(float64))
		call(t, h, "POST", fmt.Sprintf("/api/admin/campaigns/%d/start", cid), mkt, nil)
		a.Campaigns.Batch = 5
		a.Campaigns.Lease = 300 * time.Millisecond

		// A worker killed after a few batches (its context ends mid-batch).
		killCtx, kill := context.WithCancel(context.Background())
		go func() {
			for {
				var k int64
				db.Model(&model.CampaignRecipient{}).Where("campaign_id = ?", cid).Count(&k)
				if k >= 15 {
					kill()
					return
				}
				time.Sleep(2 * time.Millisecond)
			}
		}()
		_, _ = a.Campaigns.Work(killCtx)
		kill()
		var partial model.Campaign
		db.Where("id = ?", cid).Take(&partial)
		if partial.Status != model.CampaignPreparing && partial.Prepared < n {
			t.Fatalf("after the kill: %s with %d prepared", partial.Status, partial.Prepared)
		}
		// Its lease runs out; two workers race for the rest.
		time.Sleep(350 * time.Millisecond)
		var wg sync.WaitGroup
		for w := 0; w < 2; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 4; i++ {
					if _, err := a.Campaigns.Work(context.Background()); err != nil {
						t.Error(err)
					}
				}
			}()
		}
		wg.Wait()
		var rows []model.CampaignRecipient
		db.Where("campaign_id = ?", cid).Find(&rows)
		seen := map[uint64]bool{}
		for _, r := range rows {
			if seen[r.PatientID] || r.NotificationID == nil {
				t.Fatalf("patient %d twice, or without a message", r.PatientID)
			}
			seen[r.PatientID] = true
		}
		var notices int64
		db.Model(&model.Notification{}).Where("reason = ? AND dedupe_key LIKE ?", "campaign", fmt.Sprintf("campaign:%%:%d", cid)).Count(&notices)
		var final model.Campaign
		db.Where("id = ?", cid).Take(&final)
		if len(rows) != n || notices != n || final.Prepared != n || final.Status != model.CampaignSending {
			t.Fatalf("%d recipients, %d messages, %d prepared, %s; want %d", len(rows), notices, final.Prepared, final.Status, n)
		}
		for i := 0; i < 3; i++ {
			if _, err := a.Dispatcher.ProcessDue(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		if got := runCampaignRounds(t, a, mkt, cid); got.Body["counts"].(map[string]any)["sent"] != float64(n) || sumSends(subscribeSends(a)) != n {
			t.Fatalf("sent: %s, sandbox %d", got.Raw, sumSends(subscribeSends(a)))
		}
	})
}

// Marketing messages wait out the quiet hours: prepared now, due at their
// end, and nothing goes out before.
func TestCampaignWaitsOutQuietHours(t *testing.T) {
	sh := time.Now().In(model.Shanghai)
	quiet := sh.Add(-time.Hour).Format("15:04") + "-" + sh.Add(2*time.Hour).Format("15:04")
	a := newIdleApp(t, "sqlite", func(c *app.Config) { c.QuietHours = quiet })
	h := a.Router
	admin := staffLogin(t, h, app.DemoAdminUser, app.DemoAdminPassword)
	mkt := newStaffOnce(t, a, admin, "mkt", "marketing")
	tag := call(t, h, "POST", "/api/admin/tags", mkt, map[string]any{"name": "夜间", "category": "basic"})
	tagID := uint64(tag.Body["id"].(float64))
	campaignPatient(t, a, "quiet-1", tagID, true, true)
	seg := call(t, h, "POST", "/api/admin/segments", mkt, map[string]any{"name": "夜间", "purpose": "marketing", "conditions": all(cond("tag", "any", []uint64{tagID}))})
	c := call(t, h, "POST", "/api/admin/campaigns", mkt, map[string]any{"name": "夜间", "segment_id": seg.Body["id"], "channel": "subscribe",
		"template_id": "sbx-tmpl-marketing", "data": map[string]string{"thing1": "夜间活动"}})
	got := runCampaign(t, a, mkt, uint64(c.Body["id"].(float64)))
	if counts := got.Body["counts"].(map[string]any); counts["queued"] != 1.0 || counts["sent"] != 0.0 || sumSends(subscribeSends(a)) != 0 {
		t.Fatalf("sent in the quiet hours: %s", got.Raw)
	}
	var n model.Notification
	a.DB.Gorm().Where("reason = ?", "campaign").Take(&n)
	if end := sh.Add(2 * time.Hour).Truncate(time.Minute); n.DueAt.Before(end.Add(-time.Minute)) {
		t.Fatalf("due %s, before the quiet hours end (%s)", n.DueAt.In(model.Shanghai), end)
	}
}

// A mass-send campaign reaches the consenting followers under WeChat's 4 a
// month, and a read of the article after it counts as opened.
func TestMassCampaign(t *testing.T) {
	forEachBackend(t, noQuiet, func(t *testing.T, a *app.App) {
		h := a.Router
		db := a.DB.Gorm()
		admin := staffLogin(t, h, app.DemoAdminUser, app.DemoAdminPassword)
		mkt := newStaffOnce(t, a, admin, "mkt", "marketing")
		tag := call(t, h, "POST", "/api/admin/tags", mkt, map[string]any{"name": "群发活动", "category": "basic"})
		tagID := uint64(tag.Body["id"].(float64))
		pids, opens := followingPatients(t, a, "massc", 5, tagID, true)
		away, _ := followingPatients(t, a, "massc-away", 1, tagID, false)
		now := time.Now()
		for _, pid := range append(pids[:4], away...) {
			db.Create(&model.Consent{PatientID: pid, Kind: model.ConsentMarketing, Version: "2026-11", Granted: true, CreatedAt: now})
		}
		db.Create(&model.MassReceipt{OpenID: opens[3], Month: now.In(model.Shanghai).Format("2006-01"), Count: 4})
		art := publishedArticle(t, a, mkt, "冬季体检须知（活动）")
		seg := call(t, h, "POST", "/api/admin/segments", mkt, map[string]any{"name": "群发活动", "purpose": "marketing", "conditions": all(cond("tag", "any", []uint64{tagID}))})
		c := call(t, h, "POST", "/api/admin/campaigns", mkt, map[string]any{"name": "冬季群发", "segment_id": seg.Body["id"], "channel": "mass", "article_id": art})
		if c.Status != 201 {
			t.Fatalf("create: %d %s", c.Status, c.Raw)
		}
		cid := uint64(c.Body["id"].(float64))
		call(t, h, "POST", fmt.Sprintf("/api/admin/campaigns/%d/start", cid), mkt, nil)
		var got response
		eventually(t, 30*time.Second, "the mass campaign ends", func() bool {
			got = call(t, h, "GET", fmt.Sprintf("/api/admin/campaigns/%d", cid), mkt, nil)
			return got.Body["status"] == "done"
		})
		counts := got.Body["counts"].(map[string]any)
		sk := counts["skipped"].(map[string]any)
		if counts["recipients"] != 6.0 || counts["sent"] != 3.0 || sk["no_consent"] != 1.0 || sk["not_follower"] != 1.0 || sk["mass_limit"] != 1.0 {
			t.Fatalf("mass campaign: %s", got.Raw)
		}
		var camp model.Campaign
		db.Where("id = ?", cid).Take(&camp)
		var masses []model.MassSend
		db.Where("id IN ?", massIDsOf(camp)).Find(&masses)
		total := 0
		for _, m := range masses {
			total += m.Total
		}
		if total != 3 || len(masses) != 1 {
			t.Fatalf("%d mass sends for %d followers", len(masses), total)
		}
		// A recipient of the article variant reads it: opened.
		var rec model.CampaignRecipient
		if err := db.Where("campaign_id = ? AND skip = ''", cid).Take(&rec).Error; err != nil {
			t.Fatal(err)
		}
		db.Create(&model.ArticleRead{ArticleID: art, PatientID: rec.PatientID, Count: 1, FirstAt: time.Now(), LastAt: time.Now()})
		eventually(t, 15*time.Second, "the read counts as opened", func() bool {
			o := call(t, h, "GET", fmt.Sprintf("/api/admin/campaigns/%d", cid), mkt, nil).Body["counts"].(map[string]any)["opened"]
			return o == 1.0
		})
	})
}

func massIDsOf(c model.Campaign) []uint64 {
	var ids []uint64
	_ = json.Unmarshal([]byte(c.MassSendIDs), &ids)
	return ids
}

// A campaign with a start time waits for it.
func TestCampaignStartsAtItsTime(t *testing.T) {
	a := newIdleApp(t, "sqlite", noQuiet)
	h := a.Router
	admin := staffLogin(t, h, app.DemoAdminUser, app.DemoAdminPassword)
	mkt := newStaffOnce(t, a, admin, "mkt", "marketing")
	tag := call(t, h, "POST", "/api/admin/tags", mkt, map[string]any{"name": "定时", "category": "basic"})
	tagID := uint64(tag.Body["id"].(float64))
	campaignPatient(t, a, "timed-1", tagID, true, true)
	seg := call(t, h, "POST", "/api/admin/segments", mkt, map[string]any{"name": "定时", "purpose": "marketing", "conditions": all(cond("tag", "any", []uint64{tagID}))})
	at := time.Now().Add(2 * time.Hour)
	c := call(t, h, "POST", "/api/admin/campaigns", mkt, map[string]any{"name": "定时", "segment_id": seg.Body["id"], "channel": "subscribe",
		"template_id": "sbx-tmpl-marketing", "data": map[string]string{"thing1": "定时活动"}, "start_at": at.Format(time.RFC3339)})
	cid := uint64(c.Body["id"].(float64))
	got := runCampaign(t, a, mkt, cid)
	if got.Body["status"] != "scheduled" || sumSends(subscribeSends(a)) != 0 {
		t.Fatalf("before its time: %s", got.Raw)
	}
	// Its time comes (the campaign worker's clock): prepared, the message due then.
	a.Campaigns.SetClock(func() time.Time { return at.Add(time.Minute) })
	if got := runCampaignRounds(t, a, mkt, cid); got.Body["status"] != "sending" || got.Body["counts"].(map[string]any)["queued"] != 1.0 {
		t.Fatalf("at its time: %s", got.Raw)
	}
	var n model.Notification
	a.DB.Gorm().Where("reason = ?", "campaign").Take(&n)
	if n.DueAt.Before(at) {
		t.Fatalf("the message is due %s, before the campaign's start %s", n.DueAt, at)
	}
}

// The fatigue cap holds across campaigns prepared at the same time: two
// campaigns to the same patients, prepared by racing workers under a cap
// of one a week, reach each patient once.
func TestFatigueCapHoldsAcrossRacingCampaigns(t *testing.T) {
	forEachIdleBackend(t, noQuiet, func(t *testing.T, a *app.App) {
		h := a.Router
		db := a.DB.Gorm()
		admin := staffLogin(t, h, app.DemoAdminUser, app.DemoAdminPassword)
		mkt := newStaffOnce(t, a, admin, "mkt", "marketing")
		tag := call(t, h, "POST", "/api/admin/tags", mkt, map[string]any{"name": "并发", "category": "basic"})
		tagID := uint64(tag.Body["id"].(float64))
		pids, _ := followingPatients(t, a, "race", 30, tagID, false)
		now := time.Now()
		for _, pid := range pids {
			db.Model(&model.Patient{}).Where("id = ?", pid).Update("open_id", fmt.Sprintf("mp-race-%d", pid))
			db.Create(&model.Consent{PatientID: pid, Kind: model.ConsentMarketing, Version: "2026-11", Granted: true, CreatedAt: now})
			db.Create(&model.SubscribeCredit{PatientID: pid, TemplateID: "sbx-tmpl-marketing", Credits: 2, UpdatedAt: now})
		}
		if r := call(t, h, "PUT", "/api/admin/campaigns/fatigue", mkt, map[string]any{"per_week": 1, "per_month": 4}); r.Status != 200 {
			t.Fatalf("cap: %d %s", r.Status, r.Raw)
		}
		seg := call(t, h, "POST", "/api/admin/segments", mkt, map[string]any{"name": "并发", "purpose": "marketing", "conditions": all(cond("tag", "any", []uint64{tagID}))})
		var cids []uint64
		for _, name := range []string{"并发一", "并发二"} {
			c := call(t, h, "POST", "/api/admin/campaigns", mkt, map[string]any{"name": name, "segment_id": seg.Body["id"], "channel": "subscribe",
				"template_id": "sbx-tmpl-marketing", "data": map[string]string{"thing1": name}})
			cid := uint64(c.Body["id"].(float64))
			call(t, h, "POST", fmt.Sprintf("/api/admin/campaigns/%d/start", cid), mkt, nil)
			cids = append(cids, cid)
		}
		a.Campaigns.Batch = 4
		var wg sync.WaitGroup
		for w := 0; w < 3; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 6; i++ {
					if _, err := a.Campaigns.Work(context.Background()); err != nil {
						t.Error(err)
					}
				}
			}()
		}
		wg.Wait()
		var queued []struct {
			PatientID uint64
			N         int
		}
		db.Model(&model.CampaignRecipient{}).Select("patient_id, COUNT(*) AS n").Where("campaign_id IN ? AND skip = ''", cids).Group("patient_id").Scan(&queued)
		for _, q := range queued {
			if q.N != 1 {
				t.Fatalf("patient %d is queued in %d campaigns under a cap of one a week", q.PatientID, q.N)
			}
		}
		var skipped int64
		db.Model(&model.CampaignRecipient{}).Where("campaign_id IN ? AND skip = ?", cids, model.SkipCapped).Count(&skipped)
		if len(queued) != len(pids) || skipped != int64(len(pids)) {
			t.Fatalf("%d patients queued, %d capped; want %d each", len(queued), skipped, len(pids))
		}
	})
}
