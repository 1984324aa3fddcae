package app_test

import (
	"compress/gzip"
	"io"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

// The console is served at / from the binary: index.html for the app's own
// paths (not cached), hashed assets cached for a year and gzipped, a strict
// Content-Security-Policy, a missing asset a 404, the API untouched.
func TestConsoleIsServed(t *testing.T) {
	a := newApp(t, "sqlite", nil)
	get := func(path, enc string) *httptest.ResponseRecorder {
		req := httptest.NewRequest("GET", path, nil)
		if enc != "" {
			req.Header.Set("Accept-Encoding", enc)
		}
		rec := httptest.NewRecorder()
		a.Router.ServeHTTP(rec, req)
		return rec
	}
	for _, p := range []string{"/", "/frontdesk", "/login?next=/frontdesk"} {
		r := get(p, "")
		if r.Code != 200 || !strings.Contains(r.Body.String(), `<div id="app">`) || r.Header().Get("Cache-Control") != "no-cache" {
			t.Fatalf("%s: %d %q %s", p, r.Code, r.Header().Get("Cache-Control"), r.Body.String())
		}
		csp := r.Header().Get("Content-Security-Policy")
		// No inline script, ever; inline styles are the article editor's.
		scripts := regexp.MustCompile(`script-src [^;]*`).FindString(csp)
		if scripts != "script-src 'self'" || strings.Contains(csp, "unsafe-eval") || !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Fatalf("%s: CSP %q", p, csp)
		}
		if regexp.MustCompile(`<script>|<script [^>]*>[^<]`).MatchString(r.Body.String()) {
			t.Fatalf("%s: an inline script: %s", p, r.Body.String())
		}
	}
	index := get("/", "").Body.String()
	js := regexp.MustCompile(`/assets/index-[^"]+\.js`).FindString(index)
	if js == "" {
		t.Fatalf("no script in index.html: %s", index)
	}
	r := get(js, "gzip, br")
	if r.Code != 200 || r.Header().Get("Content-Encoding") != "gzip" || !strings.Contains(r.Header().Get("Cache-Control"), "immutable") ||
		!strings.Contains(r.Header().Get("Content-Type"), "javascript") {
		t.Fatalf("%s: %d %v", js, r.Code, r.Header())
	}
	zr, err := gzip.NewReader(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := io.ReadAll(zr)
	if len(plain) < 1000 || len(plain) <= r.Body.Len() {
		t.Fatalf("the gzipped script is %d bytes, %d unzipped", r.Body.Len(), len(plain))
	}
	if r := get("/assets/nothing-here.js", ""); r.Code != 404 {
		t.Fatalf("a missing asset: %d", r.Code)
	}
	if r := get("/api/nothing", ""); r.Code != 404 || !strings.Contains(r.Body.String(), "not_found") {
		t.Fatalf("an unknown API path: %d %s", r.Code, r.Body.String())
	}
	if r := get("/api/console/config", ""); r.Code != 200 || !strings.Contains(r.Body.String(), `"sandbox":true`) || !strings.Contains(r.Body.String(), "frontdesk") {
		t.Fatalf("config: %d %s", r.Code, r.Body.String())
	}
	// The navigation follows the server's role table: /me lists the actions.
	mkt := staffLogin(t, a.Router, "marketing", "careloop-demo")
	me := call(t, a.Router, "GET", "/api/admin/me", mkt, nil)
	acts, _ := me.Body["actions"].([]any)
	has := func(x string) bool {
		for _, v := range acts {
			if v == x {
				return true
			}
		}
		return false
	}
	if me.Status != 200 || !has("patients.read") || !has("oa.manage") || has("bookings.desk") || has("staff.manage") {
		t.Fatalf("marketing's actions: %s", me.Raw)
	}
}
