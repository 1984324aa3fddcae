package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"careloop/testenv"
	"careloop/wxsandbox"
)

// When CARELOOP_TEST_CHILD is set, the test binary is careloop itself: the
// multi-process tests start copies of it.
func TestMain(m *testing.M) {
	if os.Getenv("CARELOOP_TEST_CHILD") == "1" {
		if err := run(context.Background(), os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, "careloop:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestProductionRefusesToStart(t *testing.T) {
	var out, errb bytes.Buffer
	err := run(context.Background(), nil, func(k string) string {
		if k == "CARELOOP_MODE" {
			return "production"
		}
		return ""
	}, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "CARELOOP_MP_SECRET is not set") || !strings.Contains(err.Error(), "CARELOOP_MYSQL_DSN is not set") {
		t.Fatalf("production without configuration: %v", err)
	}
}

func TestMigrateCommand(t *testing.T) {
	dir := t.TempDir()
	var out bytes.Buffer
	err := run(context.Background(), []string{"migrate"}, func(k string) string {
		if k == "CARELOOP_DATA_DIR" {
			return dir
		}
		return ""
	}, &out, io.Discard)
	if err != nil || !strings.Contains(out.String(), "schema is up to date") {
		t.Fatalf("migrate: %v\n%s", err, out.String())
	}
	if _, err := os.Stat(dir + "/careloop.db"); err != nil {
		t.Fatal("no database file after migrate")
	}
}

type child struct {
	addr string
	cmd  *exec.Cmd
	out  *syncBuffer
}

// syncBuffer is written by the child's output copier while a failing test
// may read it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func startChild(t *testing.T, env []string) *child {
	t.Helper()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	c := &child{addr: addr, out: &syncBuffer{}}
	c.cmd = exec.Command(os.Args[0], "serve")
	c.cmd.Env = append(os.Environ(), append(env, "CARELOOP_TEST_CHILD=1", "CARELOOP_ADDR="+addr)...)
	c.cmd.Stdout, c.cmd.Stderr = c.out, c.out
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = c.cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = c.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = c.cmd.Process.Kill()
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if res, err := http.Get("http://" + addr + "/healthz"); err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				return c
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("careloop did not come up on %s:\n%s", addr, c.out.String())
	return nil
}

func post(t *testing.T, url, token string, body any) (int, map[string]any) {
	raw, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", url, bytes.NewReader(raw))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Error(err)
		return 0, nil
	}
	defer res.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(res.Body).Decode(&m)
	return res.StatusCode, m
}

// Two careloop processes sharing MySQL and Redis fetch the access token once
// between them; a 40001 leads to exactly one refresh and a successful retry.
func TestTwoProcessesShareOneAccessToken(t *testing.T) {
	dsn := testenv.NewMySQLDatabase(t)
	rs := testenv.Redis(t)
	sb := wxsandbox.New(wxsandbox.Options{
		Apps: []wxsandbox.App{
			{AppID: "wxe2emp", Secret: "e2e-mp-secret", Kind: wxsandbox.MiniProgram},
			{AppID: "wxe2eoa", Secret: "e2e-oa-secret", Kind: wxsandbox.OfficialAccount},
		},
		DevLogins: true,
	})
	srv := httptest.NewServer(sb.Handler())
	defer srv.Close()
	env := []string{
		"CARELOOP_MYSQL_DSN=" + dsn, "CARELOOP_REDIS_ADDR=" + testenv.RedisAddr(), "CARELOOP_REDIS_PREFIX=" + rs.Prefix(),
		"CARELOOP_WECHAT_API_BASE=" + srv.URL, "CARELOOP_MYSQL_MAX_CONNS=12", "CARELOOP_DATA_DIR=" + t.TempDir(),
		"CARELOOP_MP_APPID=wxe2emp", "CARELOOP_MP_SECRET=e2e-mp-secret", "CARELOOP_OA_APPID=wxe2eoa", "CARELOOP_OA_SECRET=e2e-oa-secret",
	}
	a := startChild(t, env)
	b := startChild(t, env)

	var wg sync.WaitGroup
	for i, c := range []*child{a, b, a, b, a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			status, body := post(t, "http://"+c.addr+"/api/mp/login", "", map[string]string{"code": fmt.Sprintf("dev:p%d", i)})
			if status != 200 {
				t.Errorf("login on %s: %d %v", c.addr, status, body)
				return
			}
			status, body = post(t, "http://"+c.addr+"/api/mp/phone", body["token"].(string), map[string]string{"code": fmt.Sprintf("dev:1380013800%d", i)})
			if status != 200 {
				t.Errorf("bind phone on %s: %d %v\n%s", c.addr, status, body, c.out.String())
			}
		}()
	}
	wg.Wait()
	if n := sb.TokenFetches(); n != 1 {
		t.Fatalf("two processes fetched the access token %d times, want 1\n%s\n%s", n, a.out, b.out)
	}
	if n := sb.Calls(wxsandbox.APIPhoneNumber); n != 6 {
		t.Fatalf("phone calls %d, want 6", n)
	}

	sb.FailNext(wxsandbox.APIPhoneNumber, 1, wxsandbox.Fault{ErrCode: wxsandbox.CodeInvalidCredential})
	_, body := post(t, "http://"+b.addr+"/api/mp/login", "", map[string]string{"code": "dev:late"})
	status, res := post(t, "http://"+b.addr+"/api/mp/phone", body["token"].(string), map[string]string{"code": "dev:13900000009"})
	if status != 200 {
		t.Fatalf("bind after a 40001: %d %v", status, res)
	}
	if n := sb.TokenFetches(); n != 2 {
		t.Fatalf("after one 40001: %d token fetches, want 2", n)
	}
	if n := sb.Calls(wxsandbox.APIPhoneNumber); n != 8 {
		t.Fatalf("phone calls %d, want 8 (one refused, one retried)", n)
	}
	// The other process picks up the refreshed token without fetching.
	_, body = post(t, "http://"+a.addr+"/api/mp/login", "", map[string]string{"code": "dev:later"})
	if status, res := post(t, "http://"+a.addr+"/api/mp/phone", body["token"].(string), map[string]string{"code": "dev:13900000010"}); status != 200 {
		t.Fatalf("bind on the other process: %d %v", status, res)
	}
	if n := sb.TokenFetches(); n != 2 {
		t.Fatalf("the other process fetched again: %d fetches, want 2", n)
	}
}

// careloop rotate-key re-seals under the current key of CARELOOP_DATA_KEYS.
func TestRotateKeyCommand(t *testing.T) {
	dir := t.TempDir()
	env := func(k string) string {
		switch k {
		case "CARELOOP_DATA_DIR":
			return dir
		case "CARELOOP_DATA_KEYS":
			return "2:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
		}
		return ""
	}
	if err := run(context.Background(), []string{"migrate"}, env, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"rotate-key"}, env, &out, io.Discard); err != nil || !strings.Contains(out.String(), "re-sealing under key 2 (keys in the ring: [1 2])") || !strings.Contains(out.String(), "done") {
		t.Fatalf("rotate-key: %v\n%s", err, out.String())
	}
}
