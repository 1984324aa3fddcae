package app_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"careloop/app"
	"careloop/model"
	"careloop/service"
)

func TestMPLogin(t *testing.T) {
	forEachBackend(t, nil, func(t *testing.T, a *app.App) {
		h := a.Router
		tok, id := login(t, h, "dev:alice")
		me := call(t, h, "GET", "/api/mp/me", tok, nil)
		if me.Status != 200 || uint64(me.Body["id"].(float64)) != id {
			t.Fatalf("me: %d %s", me.Status, me.Raw)
		}
		if _, again := login(t, h, "dev:alice"); again != id {
			t.Fatalf("second login made patient %d, want %d", again, id)
		}
		if _, bob := login(t, h, "dev:bob"); bob == id {
			t.Fatal("bob logged in as alice")
		}

		cases := []struct {
			name, code, want string
		}{
			{"login401BadCode", "nonsense", "invalid_code"},
			{"login401EmptyCode", " ", "invalid_code"},
		}
		for _, c := range cases {
			r := call(t, h, "POST", "/api/mp/login", "", map[string]string{"code": c.code})
			if r.Status != 401 || r.ErrCode() != c.want {
				t.Errorf("%s: %d %s", c.name, r.Status, r.Raw)
			}
		}
		// A real code is single-use.
		code := a.Sandbox.IssueLoginCode("carol")
		login(t, h, code)
		if r := call(t, h, "POST", "/api/mp/login", "", map[string]string{"code": code}); r.Status != 401 || r.ErrCode() != "code_used" {
			t.Errorf("login401UsedCode: %d %s", r.Status, r.Raw)
		}
		// And it expires after five minutes.
		code = a.Sandbox.IssueLoginCode("dave")
		a.Sandbox.SetClock(func() time.Time { return time.Now().Add(6 * time.Minute) })
		defer a.Sandbox.SetClock(time.Now)
		if r := call(t, h, "POST", "/api/mp/login", "", map[string]string{"code": code}); r.Status != 401 || r.ErrCode() != "invalid_code" {
			t.Errorf("login401ExpiredCode: %d %s", r.Status, r.Raw)
		}
		if r := call(t, h, "POST", "/api/mp/login", "", `{"code":`); r.Status != 400 || r.ErrCode() != "invalid_request" {
			t.Errorf("login400Malformed: %d %s", r.Status, r.Raw)
		}
		// WeChat busy: the patient is told to try again, not that the code is bad.
		a.Sandbox.FailNext("jscode2session", 1, faultBusy)
		if r := call(t, h, "POST", "/api/mp/login", "", map[string]string{"code": "dev:erin"}); r.Status != 503 || r.ErrCode() != "wechat_unavailable" {
			t.Errorf("login503Busy: %d %s", r.Status, r.Raw)
		}
	})
}

func TestConcurrentLoginsMakeOnePatient(t *testing.T) {
	forEachBackend(t, nil, func(t *testing.T, a *app.App) {
		const n = 24
		var wg sync.WaitGroup
		ids := make(chan uint64, n)
		start := make(chan struct{})
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				r := call(t, a.Router, "POST", "/api/mp/login", "", map[string]string{"code": "dev:racer"})
				if r.Status != 200 {
					t.Errorf("raced login: %d %s", r.Status, r.Raw)
					return
				}
				ids <- uint64(r.Body["patient"].(map[string]any)["id"].(float64))
			}()
		}
		close(start)
		wg.Wait()
		close(ids)
		seen := map[uint64]bool{}
		for id := range ids {
			seen[id] = true
		}
		var count int64
		a.DB.Gorm().Model(&model.Patient{}).Where("open_id = ?", "racer").Count(&count)
		if len(seen) != 1 || count != 1 {
			t.Fatalf("raced logins: %d distinct ids, %d rows; want 1 and 1", len(seen), count)
		}
	})
}

func TestTokensAndRoles(t *testing.T) {
	forEachBackend(t, nil, func(t *testing.T, a *app.App) {
		h := a.Router
		ptok, _ := login(t, h, "dev:alice")
		stok := staffLogin(t, h, app.DemoAdminUser, app.DemoAdminPassword)
		cases := []struct {
			name, path, token string
			status            int
			code              string
		}{
			{"me200", "/api/mp/me", ptok, 200, ""},
			{"adminMe200", "/api/admin/me", stok, 200, ""},
			{"me401NoToken", "/api/mp/me", "", 401, "unauthorized"},
			{"me401Garbage", "/api/mp/me", "abc.def", 401, "invalid_token"},
			{"me401Forged", "/api/mp/me", forge(ptok), 401, "invalid_token"},
			{"adminMe403PatientToken", "/api/admin/me", ptok, 403, "forbidden"},
			{"me403StaffToken", "/api/mp/me", stok, 403, "forbidden"},
		}
		for _, c := range cases {
			r := call(t, h, "GET", c.path, c.token, nil)
			if r.Status != c.status || (c.code != "" && r.ErrCode() != c.code) {
				t.Errorf("%s: %d %s", c.name, r.Status, r.Raw)
			}
		}
		if r := call(t, h, "POST", "/api/mp/logout", ptok, nil); r.Status != 204 {
			t.Fatalf("logout: %d %s", r.Status, r.Raw)
		}
		if r := call(t, h, "GET", "/api/mp/me", ptok, nil); r.Status != 401 || r.ErrCode() != "token_expired" {
			t.Errorf("me401AfterLogout: %d %s", r.Status, r.Raw)
		}
	})
}

// Guessing a staff password makes the guesser's address wait, longer each
// time, without locking the account for its owner; an account failing
// from many addresses is reported (log and metric).
func TestStaffLoginDelaysNotLocks(t *testing.T) {
	a := newApp(t, "sqlite", nil)
	from := func(ip, password string) response {
		t.Helper()
		req := httptest.NewRequest("POST", "/api/admin/login", strings.NewReader(fmt.Sprintf(`{"username":"admin","password":%q}`, password)))
		req.Header.Set("Content-Type", "application/json")
		req.RemoteAddr = ip + ":40000"
		rec := httptest.NewRecorder()
		a.Router.ServeHTTP(rec, req)
		r := response{Status: rec.Code, Raw: rec.Body.Bytes()}
		_ = json.Unmarshal(r.Raw, &r.Body)
		return r
	}
	for i := 1; i <= 3; i++ {
		if r := from("198.51.100.1", "wrong-password"); r.Status != 401 || r.ErrCode() != "invalid_credentials" {
			t.Fatalf("failure %d: %d %s", i, r.Status, r.Raw)
		}
	}
	// The fourth failure sets a wait for this address and this account.
	from("198.51.100.1", "wrong-password")
	r := from("198.51.100.1", app.DemoAdminPassword)
	if r.Status != 429 || r.ErrCode() != "login_delayed" {
		t.Fatalf("right password while this address waits: %d %s", r.Status, r.Raw)
	}
	// No hard lock: the owner, from their own address, logs in.
	if r := from("203.0.113.9", app.DemoAdminPassword); r.Status != 200 {
		t.Fatalf("the owner from another address: %d %s", r.Status, r.Raw)
	}
	// The wait ends (1 s after the fourth failure), then grows: 2 s after the fifth.
	time.Sleep(1100 * time.Millisecond)
	if r := from("198.51.100.1", "wrong-password"); r.Status != 401 {
		t.Fatalf("after the wait: %d %s", r.Status, r.Raw)
	}
	time.Sleep(1100 * time.Millisecond)
	if r := from("198.51.100.1", app.DemoAdminPassword); r.Status != 429 {
		t.Fatalf("the second wait should be longer: %d %s", r.Status, r.Raw)
	}
	// Unknown users are answered like wrong passwords.
	if r := call(t, a.Router, "POST", "/api/admin/login", "", map[string]string{"username": "nobody", "password": "x"}); r.Status != 401 || r.ErrCode() != "invalid_credentials" {
		t.Fatalf("unknown user: %d %s", r.Status, r.Raw)
	}
	// Failures from many addresses (a botnet): reported once, as a metric.
	for i := 0; i < 12; i++ {
		from(fmt.Sprintf("192.0.2.%d", 100+i), "wrong-password")
	}
	m := call(t, a.Router, "GET", "/metrics", "", nil)
	if !strings.Contains(string(m.Raw), "careloop_staff_login_attacks_total 1") {
		t.Fatalf("the attack is not in the metrics:\n%.3000s", m.Raw)
	}
	// Ten failures at once on another account, from ten addresses: each is
	// counted (none lost to a race), so the tenth is reported, once.
	var wg sync.WaitGroup
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := httptest.NewRequest("POST", "/api/admin/login", strings.NewReader(`{"username":"racer","password":"wrong"}`))
			req.Header.Set("Content-Type", "application/json")
			req.RemoteAddr = fmt.Sprintf("192.0.2.%d:40000", 200+i)
			a.Router.ServeHTTP(httptest.NewRecorder(), req)
		}()
	}
	wg.Wait()
	m = call(t, a.Router, "GET", "/metrics", "", nil)
	if !strings.Contains(string(m.Raw), "careloop_staff_login_attacks_total 2") {
		t.Fatalf("ten racing failures were not all counted:\n%.3000s", m.Raw)
	}
}

func TestConfiguredAdminExists(t *testing.T) {
	a := newApp(t, "sqlite", func(c *app.Config) { c.AdminUser, c.AdminPassword = "chief", "s3cret-pass" })
	staffLogin(t, a.Router, "chief", "s3cret-pass")
	if r := call(t, a.Router, "POST", "/api/admin/login", "", map[string]string{"username": app.DemoAdminUser, "password": app.DemoAdminPassword}); r.Status != 401 {
		t.Fatalf("demo admin must not exist when an admin is configured: %d", r.Status)
	}
}

func TestPhoneBindingMergesImportedPatient(t *testing.T) {
	forEachBackend(t, nil, func(t *testing.T, a *app.App) {
		h := a.Router
		key, _ := a.Cfg.DataKeyBytes()
		sealer, _ := service.NewSealer(key)
		his, hash := "HIS-0001", sealer.Hash("13800138001")
		imported := model.Patient{HISID: &his, Name: "王芳", PhoneHash: &hash, PhoneEnc: sealer.Seal([]byte("13800138001")), Gender: "female"}
		if err := a.DB.Gorm().Create(&imported).Error; err != nil {
			t.Fatal(err)
		}
		tok, selfID := login(t, h, "dev:wangfang")
		r := call(t, h, "POST", "/api/mp/phone", tok, map[string]string{"code": "dev:13800138001"})
		if r.Status != 200 || uint64(r.Body["id"].(float64)) != imported.ID || r.Body["name"] != "王芳" {
			t.Fatalf("bind imported phone: %d %s", r.Status, r.Raw)
		}
		// The same token now speaks for the merged patient; the empty one is gone.
		if me := call(t, h, "GET", "/api/mp/me", tok, nil); uint64(me.Body["id"].(float64)) != imported.ID {
			t.Fatalf("me after merge: %s", me.Raw)
		}
		var n int64
		a.DB.Gorm().Model(&model.Patient{}).Where("id = ?", selfID).Count(&n)
		if n != 0 {
			t.Fatal("the self-registered record was kept beside the imported one")
		}
		if _, again := login(t, h, "dev:wangfang"); again != imported.ID {
			t.Fatalf("next login lands on %d, want %d", again, imported.ID)
		}
		// A phone bound to another WeChat user is refused.
		tok2, _ := login(t, h, "dev:other")
		if r := call(t, h, "POST", "/api/mp/phone", tok2, map[string]string{"code": "dev:13800138001"}); r.Status != 409 || r.ErrCode() != "phone_taken" {
			t.Fatalf("phone of another: %d %s", r.Status, r.Raw)
		}
		// A fresh phone binds to the caller; the raw row does not show it.
		if r := call(t, h, "POST", "/api/mp/phone", tok2, map[string]string{"code": "dev:13900139000"}); r.Status != 200 || r.Body["phone_bound"] != true {
			t.Fatalf("bind fresh phone: %d %s", r.Status, r.Raw)
		}
		rows, err := a.DB.Gorm().Raw("SELECT * FROM patients").Rows()
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		cols, _ := rows.Columns()
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			_ = rows.Scan(ptrs...)
			for i, v := range vals {
				var b []byte
				switch x := v.(type) {
				case []byte:
					b = x
				case string:
					b = []byte(x)
				}
				if bytes.Contains(b, []byte("13900139000")) || bytes.Contains(b, []byte("13800138001")) {
					t.Fatalf("column %s holds a phone in clear", cols[i])
				}
			}
		}
		if r := call(t, h, "POST", "/api/mp/phone", tok2, map[string]string{"code": "bogus"}); r.Status != 401 || r.ErrCode() != "invalid_code" {
			t.Fatalf("bad phone code: %d %s", r.Status, r.Raw)
		}
	})
}

// forge changes one character in the middle of the token's signature.
func forge(tok string) string {
	i := len(tok) - 20
	c := byte('A')
	if tok[i] == 'A' {
		c = 'B'
	}
	return tok[:i] + string(c) + tok[i+1:]
}
