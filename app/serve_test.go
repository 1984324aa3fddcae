package app_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"testing"
	"time"

	"careloop/app"
	"careloop/testenv"
)

// SIGTERM (ctx cancelled) lets a request already in flight finish.
func TestServeFinishesInFlightRequests(t *testing.T) {
	a := newApp(t, "sqlite", nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	entered := make(chan struct{})
	slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		time.Sleep(300 * time.Millisecond)
		fmt.Fprint(w, "done")
	})
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- a.Serve(ctx, ln, slow) }()
	got := make(chan int, 1)
	go func() {
		res, err := http.Get("http://" + ln.Addr().String() + "/")
		if err != nil {
			got <- -1
			return
		}
		res.Body.Close()
		got <- res.StatusCode
	}()
	<-entered
	cancel()
	if code := <-got; code != 200 {
		t.Fatalf("in-flight request got %d during shutdown", code)
	}
	if err := <-served; err != nil {
		t.Fatalf("serve: %v", err)
	}
	if _, err := http.Get("http://" + ln.Addr().String() + "/"); err == nil {
		t.Fatal("still accepting after shutdown")
	}
}

// Redis stops: /readyz says 503 within 5 s; it starts again: 200 without a restart.
func TestReadyzFollowsRedis(t *testing.T) {
	port := testenv.FreePort(t)
	redis := testenv.StartRedis(t, port)
	a := newApp(t, "mysql", func(c *app.Config) { c.RedisAddr = "127.0.0.1:" + strconv.Itoa(port) })
	if r := call(t, a.Router, "GET", "/readyz", "", nil); r.Status != 200 {
		t.Fatalf("ready with redis up: %d %s", r.Status, r.Raw)
	}
	_ = redis.Process.Signal(os.Kill)
	_, _ = redis.Process.Wait()
	waitStatus(t, a, 503, 5*time.Second)
	if r := call(t, a.Router, "GET", "/readyz", "", nil); r.Body["checks"].(map[string]any)["database"] != "ok" {
		t.Fatalf("the database is still fine: %s", r.Raw)
	}
	testenv.StartRedis(t, port)
	waitStatus(t, a, 200, 5*time.Second)
}

func waitStatus(t *testing.T, a *app.App, want int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	last := 0
	for time.Now().Before(deadline) {
		if last = call(t, a.Router, "GET", "/readyz", "", nil).Status; last == want {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("/readyz stayed %d for %s, want %d", last, within, want)
}

// A staff member's live stream ends when the server shuts down instead of
// holding the graceful shutdown until its deadline.
func TestServeEndsLiveStreams(t *testing.T) {
	a := newApp(t, "sqlite", func(c *app.Config) { c.ShutdownGrace = 20 * time.Second })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- a.Serve(ctx, ln, a.Router) }()
	admin := staffLogin(t, a.Router, app.DemoAdminUser, app.DemoAdminPassword)
	req, _ := http.NewRequest("GET", "http://"+ln.Addr().String()+"/api/admin/conversations/stream", nil)
	req.Header.Set("Authorization", "Bearer "+admin)
	res, err := http.DefaultClient.Do(req)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("stream: %v %v", err, res)
	}
	defer res.Body.Close()
	start := time.Now()
	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("shutdown waited for the live stream")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("shutdown took %s", d)
	}
}
