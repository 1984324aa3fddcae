package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"careloop/app"
	"careloop/model"
	"careloop/service"
	"careloop/testenv"
)

// newApp wires careloop in sandbox mode on a fresh database of backend
// ("sqlite" or "mysql"), with the in-process WeChat sandbox.
func newApp(t testing.TB, backend string, mutate func(*app.Config)) *app.App {
	t.Helper()
	a := newIdleApp(t, backend, mutate)
	// The background loops (live fan-out, official-account events) run as
	// in serve, and end before the database closes (cleanups run last
	// first). The dispatcher and care rules are driven by the tests.
	runCtx, stop := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- a.Run(runCtx, false) }()
	t.Cleanup(func() {
		stop()
		if err := <-ran; err != nil {
			t.Errorf("background loops: %v", err)
		}
	})
	return a
}

// newIdleApp is newApp without its background loops: the test drives the
// workers itself.
func newIdleApp(t testing.TB, backend string, mutate func(*app.Config)) *app.App {
	t.Helper()
	env := map[string]string{"CARELOOP_DATA_DIR": t.TempDir()}
	if backend == "mysql" {
		env["CARELOOP_MYSQL_DSN"] = testenv.NewMySQLDatabase(t)
	}
	cfg, err := app.Load("", func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	// Test packages run in parallel against one MariaDB (151 connections):
	// small pools keep them under its limit.
	cfg.MySQLMaxConns = 16
	// Every test request comes from one address: the suite logs in
	// hundreds of patients from it (TestMPLoginLimits checks the limit).
	cfg.MPLoginsPerIP = 1 << 30
	// Tests count their own patients and bookings.
	cfg.DemoPatients = false
	// The sandbox's publish and mass-send jobs end at once.
	cfg.SandboxJobDelay = 20 * time.Millisecond
	if mutate != nil {
		mutate(&cfg)
	}
	var logOut io.Writer = io.Discard
	if os.Getenv("CARELOOP_TEST_LOG") != "" { // CARELOOP_TEST_LOG=1 go test … shows the service's log
		logOut = os.Stderr
	}
	a, err := app.New(context.Background(), cfg, slog.New(slog.NewJSONHandler(logOut, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	// The demo doctor is on duty in sandbox mode: tests start with nobody on
	// duty and put their own doctors on.
	var doc model.Staff
	if a.DB.Gorm().Where("username = ?", app.DemoDoctorUser).Take(&doc).Error == nil {
		if err := a.Chat.SetDuty(context.Background(), service.System, doc.ID, "", false); err != nil {
			t.Fatal(err)
		}
	}
	return a
}

// forEachBackend runs fn on SQLite and on MariaDB.
func forEachBackend(t *testing.T, mutate func(*app.Config), fn func(t *testing.T, a *app.App)) {
	for _, b := range testenv.Backends() {
		t.Run(b, func(t *testing.T) {
			a := newApp(t, b, mutate)
			if a.DB.Dialect() != b {
				t.Fatalf("wanted %s, runs on %s", b, a.DB.Dialect())
			}
			fn(t, a)
		})
	}
}

type response struct {
	Status int
	Body   map[string]any
	Raw    []byte
	Header http.Header
}

// ErrCode is the machine code of an error answer.
func (r response) ErrCode() string {
	e, _ := r.Body["error"].(map[string]any)
	s, _ := e["code"].(string)
	return s
}

func call(t *testing.T, h http.Handler, method, path, token string, body any) response {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = bytes.NewReader([]byte(b))
	default:
		raw, _ := json.Marshal(b)
		rd = bytes.NewReader(raw)
	}
	req := httptest.NewRequest(method, path, rd)
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	res := response{Status: rec.Code, Raw: rec.Body.Bytes(), Header: rec.Header()}
	_ = json.Unmarshal(res.Raw, &res.Body)
	return res
}

func login(t *testing.T, h http.Handler, code string) (string, uint64) {
	t.Helper()
	r := call(t, h, "POST", "/api/mp/login", "", map[string]string{"code": code})
	if r.Status != 200 {
		t.Fatalf("login %s: %d %s", code, r.Status, r.Raw)
	}
	p := r.Body["patient"].(map[string]any)
	return r.Body["token"].(string), uint64(p["id"].(float64))
}

func staffLogin(t *testing.T, h http.Handler, user, pw string) string {
	t.Helper()
	r := call(t, h, "POST", "/api/admin/login", "", map[string]string{"username": user, "password": pw})
	if r.Status != 200 {
		t.Fatalf("staff login %s: %d %s", user, r.Status, r.Raw)
	}
	return r.Body["token"].(string)
}

func jsonOf(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

func xmlUnmarshal(b []byte, v any) error { return xml.Unmarshal(b, v) }
