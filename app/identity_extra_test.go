package app_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"careloop/app"
	"careloop/model"
)

// The session key WeChat hands us never reaches a response or the log.
func TestSessionKeyNeverLeaves(t *testing.T) {
	var logs bytes.Buffer
	cfg, _ := app.Load("", func(k string) string {
		if k == "CARELOOP_DATA_DIR" {
			return t.TempDir()
		}
		return ""
	})
	cfg.LogLevel = "debug"
	a, err := app.New(context.Background(), cfg, slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	r := call(t, a.Router, "POST", "/api/mp/login", "", map[string]string{"code": "dev:alice"})
	for _, where := range []string{string(r.Raw), logs.String()} {
		if strings.Contains(where, "session_key") || strings.Contains(strings.ToLower(where), "sessionkey") {
			t.Fatalf("session key leaked: %s", where)
		}
	}
}

// A person already known through the official account (same unionid) is
// the same patient when they open the mini-program.
func TestLoginLinksByUnionID(t *testing.T) {
	forEachBackend(t, nil, func(t *testing.T, a *app.App) {
		union := "union-dora" // the sandbox's unionid for openid "dora"
		follower := model.Patient{UnionID: &union, Name: "公众号粉丝", Gender: "unknown"}
		a.DB.Gorm().Create(&follower)
		_, id := login(t, a.Router, "dev:dora")
		if id != follower.ID {
			t.Fatalf("login made patient %d; the follower is %d", id, follower.ID)
		}
	})
}

func TestStaffLoginLimitedPerIP(t *testing.T) {
	a := newApp(t, "sqlite", nil)
	last := 0
	for i := 0; i < 31; i++ {
		r := call(t, a.Router, "POST", "/api/admin/login", "", map[string]string{"username": fmt.Sprintf("guess%d", i), "password": "x"})
		last = r.Status
		if i < 30 && r.Status != 401 {
			t.Fatalf("attempt %d: %d", i+1, r.Status)
		}
	}
	if last != 429 {
		t.Fatalf("31st attempt from one address: %d, want 429", last)
	}
}

// Forwarding headers are believed only from configured proxies: a forged
// X-Forwarded-For neither escapes the per-IP login limit nor reaches the
// audit log; behind a configured proxy the forwarded address is the client.
func TestClientIPTrustsOnlyConfiguredProxies(t *testing.T) {
	loginFrom := func(a *app.App, xff, user string) (int, string) {
		req := httptest.NewRequest("POST", "/api/admin/login", strings.NewReader(fmt.Sprintf(`{"username":%q,"password":"wrong-password"}`, user)))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Forwarded-For", xff)
		rec := httptest.NewRecorder()
		a.Router.ServeHTTP(rec, req)
		return rec.Code, rec.Body.String()
	}
	a := newApp(t, "sqlite", nil)
	admin := staffLogin(t, a.Router, app.DemoAdminUser, app.DemoAdminPassword)
	last := 0
	for i := 0; i < 31; i++ {
		last, _ = loginFrom(a, fmt.Sprintf("203.0.113.%d", i+1), fmt.Sprintf("guess%d", i))
	}
	if last != 429 {
		t.Fatalf("31st attempt with a new forged address each time: %d, want 429 (the limit is per real address)", last)
	}
	_, pid := login(t, a.Router, "dev:audited")
	view := func(a *app.App, tok string) {
		req := httptest.NewRequest("GET", fmt.Sprintf("/api/admin/patients/%d", pid), nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("X-Forwarded-For", "198.51.100.77")
		a.Router.ServeHTTP(httptest.NewRecorder(), req)
	}
	view(a, admin)
	var entry model.AuditLog
	a.DB.Gorm().Where("action = ?", "patient.view").Order("id DESC").Take(&entry)
	if entry.IP != "192.0.2.1" { // httptest's peer address
		t.Fatalf("audit IP %q, want the connection's peer", entry.IP)
	}
	// Behind a configured proxy (httptest's peer), the forwarded address counts.
	b := newApp(t, "sqlite", func(c *app.Config) { c.TrustedProxies = "192.0.2.0/24" })
	tokB := staffLogin(t, b.Router, app.DemoAdminUser, app.DemoAdminPassword)
	_, pid = login(t, b.Router, "dev:audited")
	view(b, tokB)
	b.DB.Gorm().Where("action = ?", "patient.view").Order("id DESC").Take(&entry)
	if entry.IP != "198.51.100.77" {
		t.Fatalf("audit IP behind a trusted proxy %q, want the forwarded client", entry.IP)
	}
}

// Mini-program logins are limited per address and per WeChat user, and a
// patient keeps at most ten live sessions (the oldest end).
func TestMPLoginLimits(t *testing.T) {
	a := newApp(t, "sqlite", func(c *app.Config) { c.MPLoginsPerIP = 1 << 30 })
	var toks []string
	status := 0
	for i := 0; i < 31; i++ {
		r := call(t, a.Router, "POST", "/api/mp/login", "", map[string]string{"code": "dev:eager"})
		status = r.Status
		if r.Status == 200 {
			toks = append(toks, r.Body["token"].(string))
		}
	}
	if status != 429 || len(toks) != 30 {
		t.Fatalf("31 logins of one user: %d tokens, last %d", len(toks), status)
	}
	var live int64
	a.DB.Gorm().Model(&model.Session{}).Where("subject = ? AND revoked_at IS NULL", model.SubjectPatient).Count(&live)
	if live != 10 {
		t.Fatalf("%d live sessions for one patient, want 10", live)
	}
	if r := call(t, a.Router, "GET", "/api/mp/me", toks[0], nil); r.Status != 401 {
		t.Fatalf("the oldest session still works: %d", r.Status)
	}
	if r := call(t, a.Router, "GET", "/api/mp/me", toks[29], nil); r.Status != 200 {
		t.Fatalf("the newest session: %d", r.Status)
	}
	b := newApp(t, "sqlite", func(c *app.Config) { c.MPLoginsPerIP = 5 })
	for i := 0; i < 6; i++ {
		r := call(t, b.Router, "POST", "/api/mp/login", "", map[string]string{"code": fmt.Sprintf("dev:neighbour%d", i)})
		if want := map[bool]int{true: 429, false: 200}[i == 5]; r.Status != want {
			t.Fatalf("login %d from one address: %d, want %d", i+1, r.Status, want)
		}
	}
}

// A staff password change ends the other sessions of that account (the
// one that made the change stays when it is the person themself).
func TestPasswordChangeEndsSessions(t *testing.T) {
	a := newApp(t, "sqlite", nil)
	admin := staffLogin(t, a.Router, app.DemoAdminUser, app.DemoAdminPassword)
	other := staffLogin(t, a.Router, app.DemoAdminUser, app.DemoAdminPassword) // the same admin elsewhere
	r := call(t, a.Router, "POST", "/api/admin/staff", admin, map[string]string{"username": "nurse", "password": "password-nurse", "role": "frontdesk", "name": "护士小张"})
	nurseID := uint64(r.Body["id"].(float64))
	nurse := staffLogin(t, a.Router, "nurse", "password-nurse")
	if r := call(t, a.Router, "PUT", fmt.Sprintf("/api/admin/staff/%d", nurseID), admin, map[string]string{"password": "a-new-password"}); r.Status != 200 {
		t.Fatalf("change the nurse's password: %d %s", r.Status, r.Raw)
	}
	if r := call(t, a.Router, "GET", "/api/admin/me", nurse, nil); r.Status != 401 {
		t.Fatalf("the nurse's old session after the change: %d", r.Status)
	}
	var adminID uint64
	a.DB.Gorm().Model(&model.Staff{}).Where("username = ?", app.DemoAdminUser).Pluck("id", &adminID)
	if r := call(t, a.Router, "PUT", fmt.Sprintf("/api/admin/staff/%d", adminID), admin, map[string]string{"password": "admin-new-password"}); r.Status != 200 {
		t.Fatalf("change one's own password: %d %s", r.Status, r.Raw)
	}
	if r := call(t, a.Router, "GET", "/api/admin/me", admin, nil); r.Status != 200 {
		t.Fatalf("the session that changed its own password: %d", r.Status)
	}
	if r := call(t, a.Router, "GET", "/api/admin/me", other, nil); r.Status != 401 {
		t.Fatalf("the admin's other session: %d", r.Status)
	}
}
