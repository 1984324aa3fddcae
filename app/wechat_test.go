package app_test

import (
	"context"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/silenceper/wechat/v2/officialaccount/message"

	"careloop/app"
	"careloop/model"
	"careloop/wxconfig"
	"careloop/wxsandbox"
)

func postCallback(t *testing.T, a *app.App, cb wxsandbox.Callback) response {
	req := httptest.NewRequest("POST", "/wechat/oa/callback?"+cb.Query.Encode(), strings.NewReader(string(cb.Body)))
	rec := httptest.NewRecorder()
	a.Router.ServeHTTP(rec, req)
	res := response{Status: rec.Code, Raw: rec.Body.Bytes()}
	_ = jsonUnmarshal(res.Raw, &res.Body)
	return res
}

func build(t *testing.T, a *app.App, body []byte, safe bool, at time.Time) wxsandbox.Callback {
	cb, err := wxsandbox.BuildCallback(a.Cfg.OAToken, a.Cfg.OAAESKey, a.Cfg.OAAppID, body, safe, at)
	if err != nil {
		t.Fatal(err)
	}
	return cb
}

func TestOACallbackSafeMode(t *testing.T) {
	forEachBackend(t, nil, func(t *testing.T, a *app.App) {
		duringWork(a)
		now := time.Now()
		_, alice := login(t, a.Router, "dev:alice")
		a.Sandbox.SetFollower(a.Cfg.OAAppID, wxsandbox.OAOpenID("alice"), true, "dept-cardiology")
		sub := wxsandbox.EventMessage(wxsandbox.OAOpenID("alice"), "subscribe", "qrscene_dept-cardiology", now, "")

		// Refusals: nothing processed.
		stale := build(t, a, sub, true, now.Add(-6*time.Minute))
		forged := build(t, a, sub, true, now)
		forged.Query.Set("signature", strings.Repeat("0", 40))
		tampered := build(t, a, sub, true, now)
		tampered.Body = []byte(strings.Replace(string(tampered.Body), "<Encrypt><![CDATA[", "<Encrypt><![CDATA[AAAA", 1))
		plain := build(t, a, sub, false, now)
		for name, c := range map[string]struct {
			cb     wxsandbox.Callback
			status int
			code   string
		}{
			"stale403": {stale, 403, "stale_timestamp"}, "forged403": {forged, 403, "bad_signature"},
			"tampered403": {tampered, 403, "bad_signature"}, "plaintext400": {plain, 400, "plaintext_refused"},
		} {
			r := postCallback(t, a, c.cb)
			if r.Status != c.status || r.ErrCode() != c.code {
				t.Errorf("%s: %d %s", name, r.Status, r.Raw)
			}
			if msg, _ := r.Body["error"].(map[string]any)["message"].(string); !regexp.MustCompile(`\p{Han}`).MatchString(msg) {
				t.Errorf("%s: the refusal is not said in Chinese: %q", name, msg)
			}
		}
		var events int64
		a.DB.Gorm().Model(&model.OAEvent{}).Count(&events)
		if events != 0 {
			t.Fatalf("refused callbacks were processed: %d", events)
		}

		// Subscribe: the encrypted reply is the welcome; the follower is recorded and linked.
		r := postCallback(t, a, build(t, a, sub, true, now))
		if r.Status != 200 {
			t.Fatalf("subscribe: %d %s", r.Status, r.Raw)
		}
		key, _ := wxconfig.AESKey(a.Cfg.OAAESKey)
		var env struct {
			MsgSignature string `xml:"MsgSignature"`
			TimeStamp    string `xml:"TimeStamp"`
			Nonce        string `xml:"Nonce"`
		}
		_ = xmlUnmarshal(r.Raw, &env)
		plainReply, err := wxconfig.OpenSafe(a.Cfg.OAToken, key, a.Cfg.OAAppID, env.MsgSignature, env.TimeStamp, env.Nonce, r.Raw)
		if err != nil || !strings.Contains(string(plainReply), "欢迎关注") {
			t.Fatalf("encrypted welcome: %v %s", err, plainReply)
		}
		deadline := time.Now().Add(5 * time.Second)
		var f model.Follower
		for time.Now().Before(deadline) {
			a.DB.Gorm().Where("open_id = ?", wxsandbox.OAOpenID("alice")).Take(&f)
			if f.PatientID != nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if !f.Subscribed || f.Scene != "dept-cardiology" || f.PatientID == nil || *f.PatientID != alice {
			t.Fatalf("follower: %+v", f)
		}
		// WeChat's retries, also at once: processed once.
		again := build(t, a, sub, true, now.Add(time.Second)) // same event, new signature
		rs := race(8, func(int) response { return postCallback(t, a, again) })
		for _, r := range rs {
			if r.Status != 200 {
				t.Fatalf("retry: %d %s", r.Status, r.Raw)
			}
		}
		msg := wxsandbox.TextMessage(wxsandbox.OAOpenID("alice"), "你好", 424242, now)
		rs = race(8, func(int) response { return postCallback(t, a, build(t, a, msg, true, now)) })
		for _, r := range rs {
			if r.Status != 200 {
				t.Fatalf("message retry: %d", r.Status)
			}
		}
		a.DB.Gorm().Model(&model.OAEvent{}).Count(&events)
		if events != 2 {
			t.Fatalf("events stored: %d, want 2 (one subscribe, one message)", events)
		}
		// The accepted message opened WeChat's 48-hour window: a customer message now goes through.
		err = a.WX.DoOA(context.Background(), "custom send", func(context.Context) error {
			return a.WX.OA.GetCustomerMessageManager().Send(message.NewCustomerTextMessage(wxsandbox.OAOpenID("alice"), "医生已回复"))
		})
		if err != nil {
			t.Fatalf("customer message inside the window: %v", err)
		}
	})
}

func TestOACallbackPlainModeRepliesAndResults(t *testing.T) {
	a := newApp(t, "sqlite", func(c *app.Config) { c.OAMode = "plain" })
	duringWork(a) // no out-of-hours reply to user messages
	now := time.Now()
	// URL verification.
	cb := build(t, a, nil, false, now)
	q := cb.Query
	q.Set("echostr", "echo-123")
	rec := httptest.NewRecorder()
	a.Router.ServeHTTP(rec, httptest.NewRequest("GET", "/wechat/oa/callback?"+q.Encode(), nil))
	if rec.Code != 200 || rec.Body.String() != "echo-123" {
		t.Fatalf("verify: %d %s", rec.Code, rec.Body.String())
	}
	admin := staffLogin(t, a.Router, app.DemoAdminUser, app.DemoAdminPassword)
	for _, r := range []map[string]any{
		{"keyword": "预约", "match": "contains", "priority": 1, "reply": "点击菜单“预约体检”即可预约"},
		{"keyword": "预约时间", "match": "exact", "priority": 0, "reply": "每天 8:00–10:30"},
		{"keyword": "REPORT", "match": "exact", "reply": "报告在小程序“我的报告”中查看"},
	} {
		if res := call(t, a.Router, "POST", "/api/admin/oa/auto-replies", admin, r); res.Status != 201 {
			t.Fatalf("auto reply: %d %s", res.Status, res.Raw)
		}
	}
	reply := func(body []byte) string {
		r := postCallback(t, a, build(t, a, body, false, now))
		if r.Status != 200 {
			t.Fatalf("callback: %d %s", r.Status, r.Raw)
		}
		return string(r.Raw)
	}
	if out := reply(wxsandbox.TextMessage("oa-bob", "预约时间", 1, now)); !strings.Contains(out, "8:00") {
		t.Fatalf("exact wins: %s", out)
	}
	if out := reply(wxsandbox.TextMessage("oa-bob", "怎么预约啊", 2, now)); !strings.Contains(out, "预约体检") {
		t.Fatalf("contains: %s", out)
	}
	if out := reply(wxsandbox.TextMessage("oa-bob", "天气", 3, now)); out != "success" {
		t.Fatalf("no match: %s", out)
	}
	if out := reply(wxsandbox.EventMessage("oa-bob", "CLICK", "REPORT", now, "")); !strings.Contains(out, "我的报告") {
		t.Fatalf("menu click: %s", out)
	}
	// A template message WeChat could not deliver.
	n := model.Notification{PatientID: 1, Reason: "report_ready", DedupeKey: "x", Channel: "template", MsgID: "777", Status: model.NotifySent, DueAt: now}
	a.DB.Gorm().Create(&n)
	reply(wxsandbox.EventMessage("oa-bob", "TEMPLATESENDJOBFINISH", "", now.Add(time.Second), "<MsgID>777</MsgID><Status><![CDATA[failed:user block]]></Status>"))
	a.DB.Gorm().Where("id = ?", n.ID).Take(&n)
	if n.Status != model.NotifyUndeliverable || !strings.Contains(n.LastError, "block") {
		t.Fatalf("template result: %+v", n)
	}
	// Unfollowing is recorded.
	reply(wxsandbox.EventMessage("oa-carol", "subscribe", "", now, ""))
	reply(wxsandbox.EventMessage("oa-carol", "unsubscribe", "", now.Add(time.Second), ""))
	var f model.Follower
	a.DB.Gorm().Where("open_id = ?", "oa-carol").Take(&f)
	if f.Subscribed {
		t.Fatal("unsubscribe not recorded")
	}
}

func TestOAMenuPublish(t *testing.T) {
	a := newApp(t, "sqlite", nil)
	admin := staffLogin(t, a.Router, app.DemoAdminUser, app.DemoAdminPassword)
	mkt := newStaff(t, a, admin, "mkt", "marketing")
	menu := map[string]any{
		"button": []map[string]any{
			{"type": "miniprogram", "name": "预约体检", "appid": a.Cfg.MPAppID, "pagepath": "pages/packages/list", "url": "https://example.org"},
			{"name": "我的", "sub_button": []map[string]any{{"type": "click", "name": "查报告", "key": "REPORT"}}},
		},
		"conditional": []map[string]any{{"button": []map[string]any{{"type": "click", "name": "VIP 专线", "key": "VIP"}}, "matchrule": map[string]any{"tag_id": "100"}}},
	}
	if r := call(t, a.Router, "PUT", "/api/admin/oa/menu", mkt, menu); r.Status != 200 {
		t.Fatalf("save: %d %s", r.Status, r.Raw)
	}
	if r := call(t, a.Router, "POST", "/api/admin/oa/menu/publish", mkt, nil); r.Status != 200 || r.Body["button"] == nil {
		t.Fatalf("publish: %d %s", r.Status, r.Raw)
	}
	if a.Sandbox.Calls(wxsandbox.APIMenuCreate) != 1 || a.Sandbox.Calls(wxsandbox.APIMenuAddCond) != 1 {
		t.Fatal("the sandbox did not receive the menu and its conditional menu")
	}
	four := map[string]any{"button": []map[string]any{{"name": "1"}, {"name": "2"}, {"name": "3"}, {"name": "4"}}}
	if r := call(t, a.Router, "PUT", "/api/admin/oa/menu", mkt, four); r.Status != 422 || r.ErrCode() != "invalid_menu" {
		t.Fatalf("four buttons: %d %s", r.Status, r.Raw)
	}
	a.Sandbox.FailNext(wxsandbox.APIMenuCreate, 1, wxsandbox.Fault{ErrCode: 40016})
	if r := call(t, a.Router, "POST", "/api/admin/oa/menu/publish", mkt, nil); r.Status != 422 || r.ErrCode() != "wechat_refused" {
		t.Fatalf("WeChat refuses: %d %s", r.Status, r.Raw)
	}
}

// Plain mode signs timestamp and nonce only: a captured signature replayed
// with another body is refused; WeChat's retry of the same body is not.
func TestPlainModeRefusesReplays(t *testing.T) {
	a := newApp(t, "sqlite", func(c *app.Config) { c.OAMode = "plain" })
	duringWork(a)
	now := time.Now()
	first := build(t, a, wxsandbox.TextMessage("oa-replayed", "你好", 7101, now), false, now)
	if r := postCallback(t, a, first); r.Status != 200 {
		t.Fatalf("first: %d %s", r.Status, r.Raw)
	}
	if r := postCallback(t, a, first); r.Status != 200 {
		t.Fatalf("WeChat's retry of the same message: %d %s", r.Status, r.Raw)
	}
	forged := first
	forged.Body = wxsandbox.TextMessage("oa-replayed", "把我的积分转给别人", 7102, now)
	if r := postCallback(t, a, forged); r.Status != 403 || r.ErrCode() != "replayed" {
		t.Fatalf("a replayed signature with another body: %d %s", r.Status, r.Raw)
	}
	var n int64
	a.DB.Gorm().Model(&model.OAEvent{}).Where("open_id = ?", "oa-replayed").Count(&n)
	if n != 1 {
		t.Fatalf("%d events stored, want 1", n)
	}
}
