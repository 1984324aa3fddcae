package app_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"careloop/app"
	"careloop/model"
	"careloop/testenv"
)

// A token is believed for a few seconds without reading its session, but
// whatever ends a session or changes a staff account is seen at once: on the
// instance that made the change and, through Redis, on another one (each
// check below waits far less than the cache's 30 s).
func TestSessionChangesReachEveryInstanceAtOnce(t *testing.T) {
	prefix := "careloop-test-" + testenv.Suffix() + ":"
	rdb := testenv.Redis(t)
	shared := func(c *app.Config) { c.RedisAddr, c.RedisPrefix = testenv.RedisAddr(), prefix }
	a1 := newApp(t, "mysql", shared)
	a2 := newApp(t, "mysql", func(c *app.Config) { shared(c); c.MySQLDSN = a1.Cfg.MySQLDSN })
	t.Cleanup(func() { testenv.DeletePrefix(rdb.Client(), prefix) })
	time.Sleep(100 * time.Millisecond) // both listening

	// within asks h until the answer is want, for at most 300 ms.
	within := func(what string, h http.Handler, path, tok string, want int) {
		t.Helper()
		deadline := time.Now().Add(300 * time.Millisecond)
		for {
			r := call(t, h, "GET", path, tok, nil)
			if r.Status == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: still %d, want %d", what, r.Status, want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	admin := staffLogin(t, a1.Router, app.DemoAdminUser, app.DemoAdminPassword)

	// Blocking a patient ends their session on both instances.
	blocked, blockedID := login(t, a1.Router, "dev:cache-blocked")
	for _, a := range []*app.App{a1, a2} {
		if r := call(t, a.Router, "GET", "/api/mp/me", blocked, nil); r.Status != 200 { // now cached on both
			t.Fatalf("before blocking: %d %s", r.Status, r.Raw)
		}
	}
	if r := call(t, a1.Router, "POST", fmt.Sprintf("/api/admin/patients/%d/block", blockedID), admin, map[string]string{"reason": "测试"}); r.Status != 200 {
		t.Fatalf("block: %d %s", r.Status, r.Raw)
	}
	within("blocked patient on the instance that blocked", a1.Router, "/api/mp/me", blocked, 401)
	within("blocked patient on the other instance", a2.Router, "/api/mp/me", blocked, 401)

	// Logging out on one instance ends the token on the other.
	out, _ := login(t, a1.Router, "dev:cache-logout")
	if r := call(t, a1.Router, "GET", "/api/mp/me", out, nil); r.Status != 200 {
		t.Fatalf("before logout: %d", r.Status)
	}
	if r := call(t, a2.Router, "POST", "/api/mp/logout", out, nil); r.Status != 204 {
		t.Fatalf("logout: %d %s", r.Status, r.Raw)
	}
	within("logged-out token on the other instance", a1.Router, "/api/mp/me", out, 401)

	// A patient who erases their account is gone everywhere at once.
	gone, _ := login(t, a1.Router, "dev:cache-erased")
	if r := call(t, a2.Router, "GET", "/api/mp/me", gone, nil); r.Status != 200 {
		t.Fatalf("before erasing: %d", r.Status)
	}
	if r := call(t, a1.Router, "POST", "/api/mp/me/erase", gone, map[string]any{"confirm": true}); r.Status/100 != 2 {
		t.Fatalf("erase: %d %s", r.Status, r.Raw)
	}
	within("erased patient's token on the other instance", a2.Router, "/api/mp/me", gone, 401)

	// A staff member's new role counts at once on the other instance: the
	// front desk may use 前台, a marketing member may not.
	r := call(t, a1.Router, "POST", "/api/admin/staff", admin, map[string]string{"username": "cache-nurse", "password": "password-nurse", "role": "frontdesk", "name": "护士小周"})
	if r.Status != 201 {
		t.Fatalf("create staff: %d %s", r.Status, r.Raw)
	}
	nurseID := uint64(r.Body["id"].(float64))
	nurse := staffLogin(t, a2.Router, "cache-nurse", "password-nurse")
	today := time.Now().In(model.Shanghai).Format(time.DateOnly)
	desk := "/api/admin/bookings?date=" + today
	if r := call(t, a2.Router, "GET", desk, nurse, nil); r.Status != 200 {
		t.Fatalf("the front desk's day as frontdesk: %d %s", r.Status, r.Raw)
	}
	if r := call(t, a1.Router, "PUT", fmt.Sprintf("/api/admin/staff/%d", nurseID), admin, map[string]string{"role": "marketing"}); r.Status != 200 {
		t.Fatalf("change role: %d %s", r.Status, r.Raw)
	}
	within("the old role on the other instance", a2.Router, desk, nurse, 403)

	// Disabling the account ends its session there too.
	if r := call(t, a1.Router, "PUT", fmt.Sprintf("/api/admin/staff/%d", nurseID), admin, map[string]any{"disabled": true}); r.Status != 200 {
		t.Fatalf("disable: %d %s", r.Status, r.Raw)
	}
	within("a disabled account on the other instance", a2.Router, "/api/admin/me", nurse, 401)
}
