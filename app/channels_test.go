package app_test

import (
	"bytes"
	"fmt"
	"image"
	_ "image/png"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"careloop/app"
	"careloop/model"
)

// waitLinked waits until the follower openID is linked to a patient (the
// callback links new followers through WeChat's user/info).
func waitLinked(t *testing.T, a *app.App, openID string) {
	t.Helper()
	eventually(t, 15*time.Second, "follower "+openID+" linked", func() bool {
		return a.DB.Gorm().Where("open_id = ? AND patient_id IS NOT NULL", openID).Take(&model.Follower{}).Error == nil
	})
}

// Marketing makes a channel with a QR code; a new follower scans it
// (subscribe with the scene), scans again (SCAN), registers and books; a
// follower from elsewhere scans it and books within 30 days. The figures
// tell first touch from any touch.
func TestChannelsAndTheirFigures(t *testing.T) {
	forEachBackend(t, nil, func(t *testing.T, a *app.App) {
		h := a.Router
		admin := staffLogin(t, h, app.DemoAdminUser, app.DemoAdminPassword)
		mkt := newStaffOnce(t, a, admin, "mkt", "marketing")
		desk := newStaffOnce(t, a, admin, "desk", "frontdesk")

		r := call(t, h, "POST", "/api/admin/channels", mkt, map[string]any{"name": "社区义诊海报", "purpose": "十二月社区义诊"})
		qrURL, _ := r.Body["qr_url"].(string)
		if r.Status != 201 || !strings.HasPrefix(r.Body["scene"].(string), "ch_") || r.Body["temporary"] != false {
			t.Fatalf("channel: %d %s", r.Status, r.Raw)
		}
		chID, scene := r.Body["id"], r.Body["scene"].(string)
		tmp := call(t, h, "POST", "/api/admin/channels", mkt, map[string]any{"name": "双十二活动", "expire_days": 7})
		if tmp.Status != 201 || tmp.Body["temporary"] != true || tmp.Body["expires_at"] == nil {
			t.Fatalf("temporary channel: %d %s", tmp.Status, tmp.Raw)
		}
		for _, bad := range []map[string]any{{"name": ""}, {"name": strings.Repeat("长", 33)}, {"name": "x", "expire_days": 31}} {
			if r := call(t, h, "POST", "/api/admin/channels", mkt, bad); r.Status != 400 {
				t.Errorf("%v: %d %s", bad, r.Status, r.Raw)
			}
		}
		if r := call(t, h, "POST", "/api/admin/channels", desk, map[string]any{"name": "前台"}); r.Status != 403 {
			t.Fatalf("the front desk makes channels: %d", r.Status)
		}
		// The QR code downloads as an image.
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", qrURL+"?download=1", nil)
		req.Header.Set("Authorization", "Bearer "+mkt)
		h.ServeHTTP(rec, req)
		cfg, format, err := image.DecodeConfig(bytes.NewReader(rec.Body.Bytes()))
		if rec.Code != 200 || err != nil || format != "png" || cfg.Width != 512 || !strings.Contains(rec.Header().Get("Content-Disposition"), "attachment") {
			t.Fatalf("QR image: %d %v %s %dpx", rec.Code, err, format, cfg.Width)
		}

		// A new follower through the channel: subscribe with the scene.
		tok, _ := login(t, h, "dev:chan-new")
		if r := call(t, h, "POST", "/sandbox/wechat/oa/scan", "", map[string]any{"openid": "oa-chan-new", "scene": scene}); r.Status != 200 {
			t.Fatalf("scan: %d %s", r.Status, r.Raw)
		}
		waitLinked(t, a, "oa-chan-new")
		call(t, h, "POST", "/sandbox/wechat/oa/scan", "", map[string]any{"openid": "oa-chan-new", "scene": scene}) // again: SCAN
		// A follower from elsewhere scans it too.
		old, _ := login(t, h, "dev:chan-old")
		call(t, h, "POST", "/sandbox/wechat/oa/event", "", map[string]any{"openid": "oa-chan-old", "event": "subscribe"})
		waitLinked(t, a, "oa-chan-old")
		call(t, h, "POST", "/sandbox/wechat/oa/scan", "", map[string]any{"openid": "oa-chan-old", "scene": scene})
		// A scene that is no channel's is ignored.
		call(t, h, "POST", "/sandbox/wechat/oa/scan", "", map[string]any{"openid": "oa-chan-old", "scene": "poster-2019"})

		pkg := anyPackage(t, a)
		for i, tk := range []string{tok, old} {
			sl := testSlot(t, a, fmt.Sprintf("0%d:00", 6+i), 5)
			if r := bookCall(t, h, tk, fmt.Sprintf("chan-%d", i), map[string]any{"package_id": pkg.ID, "slot_id": sl.ID}); r.Status != 201 {
				t.Fatalf("book: %d %s", r.Status, r.Raw)
			}
		}
		list := call(t, h, "GET", "/api/admin/channels", mkt, nil)
		var got map[string]any
		for _, it := range list.Body["items"].([]any) {
			if m := it.(map[string]any); m["id"] == chID {
				got = m
			}
		}
		want := map[string]float64{"scans": 3, "new_followers": 1, "patients": 1, "first_touch_bookings": 1,
			"first_touch_revenue_fen": float64(pkg.PriceFen), "any_touch_bookings": 2, "any_touch_revenue_fen": float64(2 * pkg.PriceFen)}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s = %v, want %v", k, got[k], v)
			}
		}
	})
}
