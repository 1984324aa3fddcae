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
