// Package benchenv sets up what the benchmark programs share: a throw-away
// MySQL database and the fully wired careloop serving on loopback.
package benchenv

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	_ "github.com/go-sql-driver/mysql" // the server-level connection that creates the database

	"careloop/app"
)

// Database creates an empty database on the server and returns its DSN
// and a func that drops it.
func Database(server, prefix string) (string, func()) {
	name := fmt.Sprintf("careloop_%s_%d", prefix, time.Now().UnixNano())
	admin, err := sql.Open("mysql", server)
	Must(err)
	_, err = admin.Exec("CREATE DATABASE " + name + " CHARACTER SET utf8mb4")
	Must(err)
	return strings.TrimSuffix(server, "/") + "/" + name, func() {
		_, _ = admin.Exec("DROP DATABASE " + name)
		_ = admin.Close()
	}
}

// Serve wires careloop from env (CARELOOP_* variables; workers off) and
// serves it on a loopback port until ctx ends. It returns the app and its
// base URL.
func Serve(ctx context.Context, env map[string]string) (*app.App, string) {
	env["CARELOOP_SERVE_WORKERS"] = "false"
	if env["CARELOOP_MP_LOGINS_PER_IP"] == "" {
		env["CARELOOP_MP_LOGINS_PER_IP"] = "100000000" // the load generator logs every patient in from one address
	}
	cfg, err := app.Load("", func(k string) string { return env[k] })
	Must(err)
	a, err := app.New(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	Must(err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	Must(err)
	go func() { _ = a.Serve(ctx, ln, a.Router) }()
	go func() { _ = a.Run(ctx, false) }() // live fan-out and official-account events, as in serve
	return a, "http://" + ln.Addr().String()
}

// Must stops the benchmark on an error.
func Must(err error) {
	if err != nil {
		log.Fatal(err)
	}
}

// Parallel runs fn(0..n-1) on c goroutines.
func Parallel(n, c int, fn func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for g := 0; g < c; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				fn(i)
			}
		}()
	}
	wg.Wait()
}

// Requests sends the n requests build makes, c at a time, and returns each
// one's latency, how many did not answer want, and the time it all took.
func Requests(client *http.Client, n, c, want int, build func(i int) *http.Request) ([]time.Duration, int64, time.Duration) {
	var mu sync.Mutex
	lat := make([]time.Duration, 0, n)
	var failed atomic.Int64
	start := time.Now()
	Parallel(n, c, func(i int) {
		req := build(i)
		t0 := time.Now()
		res, err := client.Do(req)
		Must(err)
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != want {
			failed.Add(1)
		}
		d := time.Since(t0)
		mu.Lock()
		lat = append(lat, d)
		mu.Unlock()
	})
	return lat, failed.Load(), time.Since(start)
}

// Pct is the p-th percentile of ds (sorting ds), to 0.1 ms.
func Pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds[(len(ds)-1)*p/100].Round(100 * time.Microsecond)
}

// RSSMiB is a process's resident memory, or -1.
func RSSMiB(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			var kb int
			fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(line, "VmRSS:")), "%d", &kb)
			return kb / 1024
		}
	}
	return -1
}
