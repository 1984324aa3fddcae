package app_test

import (
	"context"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"careloop/api"
	"careloop/app"
	"careloop/wxsandbox"
)

var faultBusy = wxsandbox.Fault{ErrCode: wxsandbox.CodeBusy}

func TestOpsEndpoints(t *testing.T) {
	a := newApp(t, "sqlite", nil)
	h := a.Router
	if r := call(t, h, "GET", "/healthz", "", nil); r.Status != 200 || r.Body["status"] != "ok" {
		t.Fatalf("healthz: %d %s", r.Status, r.Raw)
	}
	if r := call(t, h, "GET", "/readyz", "", nil); r.Status != 200 {
		t.Fatalf("readyz: %d %s", r.Status, r.Raw)
	}
	call(t, h, "GET", "/api/mp/me", "", nil)
	m := call(t, h, "GET", "/metrics", "", nil)
	if m.Status != 200 || !strings.Contains(string(m.Raw), `careloop_http_requests_total{method="GET",route="/api/mp/me",status="401"} 1`) {
		t.Fatalf("metrics do not count requests by route:\n%.2000s", m.Raw)
	}
	if r := call(t, h, "GET", "/api/openapi.yaml", "", nil); r.Status != 200 || !strings.HasPrefix(string(r.Raw), "openapi: 3") {
		t.Fatalf("spec: %d", r.Status)
	}
	d := call(t, h, "GET", "/api/docs", "", nil)
	if d.Status != 200 || !strings.Contains(string(d.Raw), "/api/mp/login") || !strings.Contains(string(d.Raw), "小程序登录") {
		t.Fatalf("docs page does not list the routes: %d", d.Status)
	}
	if r := call(t, h, "GET", "/healthz", "", nil); r.Header.Get("X-Request-ID") == "" {
		t.Fatal("no request id")
	}
}

func TestErrorAnswers(t *testing.T) {
	a := newApp(t, "sqlite", func(c *app.Config) { c.MaxBodyBytes = 256 })
	h := a.Router
	cases := []struct {
		name, method, path string
		body               any
		status             int
		code               string
	}{
		{"unknownRoute404", "GET", "/api/mp/nothing-here", nil, 404, "not_found"},
		{"wrongMethod405", "DELETE", "/api/mp/login", nil, 405, "method_not_allowed"},
		{"malformed400", "POST", "/api/mp/login", `{"code": 12`, 400, "invalid_request"},
		{"missingField400", "POST", "/api/mp/login", `{}`, 400, "invalid_request"},
		{"tooLarge413", "POST", "/api/mp/login", `{"code":"` + strings.Repeat("x", 1000) + `"}`, 413, "body_too_large"},
	}
	for _, c := range cases {
		r := call(t, h, c.method, c.path, "", c.body)
		if r.Status != c.status || r.ErrCode() != c.code {
			t.Errorf("%s: %d %s", c.name, r.Status, r.Raw)
		}
		if msg, _ := r.Body["error"].(map[string]any)["message"].(string); msg == "" {
			t.Errorf("%s: no message for people", c.name)
		}
	}
}

// Every route Gin serves is in api/openapi.yaml, and every path there is served.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	a := newApp(t, "sqlite", nil)
	var spec struct {
		Paths map[string]map[string]any `yaml:"paths"`
	}
	if err := yaml.Unmarshal(api.Spec, &spec); err != nil {
		t.Fatal(err)
	}
	inSpec := map[string]bool{}
	for p, ops := range spec.Paths {
		for m := range ops {
			switch m {
			case "get", "post", "put", "patch", "delete":
				inSpec[strings.ToUpper(m)+" "+p] = true
			}
		}
	}
	param := regexp.MustCompile(`:([a-zA-Z_]+)`)
	served := map[string]bool{}
	for _, r := range a.Router.Routes() {
		served[r.Method+" "+param.ReplaceAllString(r.Path, "{$1}")] = true
	}
	var missing, stale []string
	for k := range served {
		if !inSpec[k] {
			missing = append(missing, k)
		}
	}
	for k := range inSpec {
		if !served[k] {
			stale = append(stale, k)
		}
	}
	sort.Strings(missing)
	sort.Strings(stale)
	if len(missing) > 0 || len(stale) > 0 {
		t.Fatalf("api/openapi.yaml and the router disagree\nserved but not in the spec: %v\nin the spec but not served: %v", missing, stale)
	}
}

func TestSandboxMessagesListsAttempts(t *testing.T) {
	a := newApp(t, "sqlite", nil)
	h := a.Router
	if r := call(t, h, "POST", "/sandbox/wechat/faults", "", map[string]any{"api": "getuserphonenumber", "count": 1, "errcode": -1}); r.Status != http.StatusNoContent {
		t.Fatalf("arm fault: %d %s", r.Status, r.Raw)
	}
	tok, _ := login(t, h, "dev:alice")
	if r := call(t, h, "POST", "/api/mp/phone", tok, map[string]string{"code": "dev:13700137000"}); r.Status != 503 {
		t.Fatalf("phone with WeChat busy: %d %s", r.Status, r.Raw)
	}
	if r := call(t, h, "POST", "/sandbox/wechat/subscribe", "", map[string]any{"openid": "alice", "template_id": "sbx-tmpl-report-ready"}); r.Status != 204 {
		t.Fatalf("grant: %d", r.Status)
	}
	if n := a.Sandbox.Credits(a.Cfg.MPAppID, "alice", "sbx-tmpl-report-ready"); n != 1 {
		t.Fatalf("credits %d", n)
	}
	// Two sends: one with the credit just granted, one without (43101).
	for i := 0; i < 2; i++ {
		_, _ = a.WX.Subscribe(context.Background(), "alice", "sbx-tmpl-report-ready", "pages/report/detail",
			map[string]string{"thing1": "报告已出", "time2": "2026-11-25 08:30", "thing3": "请查看"})
	}
	r := call(t, h, "GET", "/sandbox/wechat/messages", "", nil)
	items, _ := r.Body["items"].([]any)
	if r.Status != 200 || len(items) != 2 {
		t.Fatalf("messages: %d %s", r.Status, r.Raw)
	}
	for i, want := range []float64{0, 43101} {
		m := items[i].(map[string]any)
		if m["api"] != "subscribe_send" || m["touser"] != "alice" || m["errcode"] != want || m["payload"] == nil {
			t.Fatalf("attempt %d: %v", i, m)
		}
	}
}

// Every answer carries the security headers; API answers with personal
// data are not stored; /metrics with a token is only for the scraper.
func TestSecurityHeadersAndPrivateMetrics(t *testing.T) {
	a := newApp(t, "sqlite", func(c *app.Config) { c.MetricsToken = "scrape-token-0123456789" })
	tok, _ := login(t, a.Router, "dev:headers")
	r := call(t, a.Router, "GET", "/api/mp/me", tok, nil)
	for k, want := range map[string]string{"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
		"Content-Security-Policy": "frame-ancestors 'none'", "Cache-Control": "no-store"} {
		if got := r.Header.Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
	if h := call(t, a.Router, "GET", "/healthz", "", nil); h.Header.Get("X-Content-Type-Options") != "nosniff" || h.Header.Get("Cache-Control") == "no-store" {
		t.Errorf("healthz headers: %v", h.Header)
	}
	if m := call(t, a.Router, "GET", "/metrics", "", nil); m.Status != 401 {
		t.Fatalf("metrics without the token: %d", m.Status)
	}
	if m := call(t, a.Router, "GET", "/metrics", "wrong-token", nil); m.Status != 401 {
		t.Fatalf("metrics with a wrong token: %d", m.Status)
	}
	if m := call(t, a.Router, "GET", "/metrics", "scrape-token-0123456789", nil); m.Status != 200 || !strings.Contains(string(m.Raw), "careloop_http_requests_total") {
		t.Fatalf("metrics with the token: %d", m.Status)
	}
}
