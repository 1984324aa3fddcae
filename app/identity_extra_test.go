package app_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
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
