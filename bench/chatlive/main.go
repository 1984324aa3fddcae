// Command chatlive measures how many live staff connections (SSE inbox
// streams) one careloop process holds and how long a patient's message
// takes to reach all of them.
//
// It starts `careloop serve` (MySQL + Redis: events go through Redis
// pub/sub as in production), opens -conns streams from this process, then
// has a patient send -messages messages one after another and records, for
// each, when every stream received it. It prints the server's RSS idle and
// with the streams open, and the fan-out latency: per message the time until
// the last stream had it, and p50/p99 over every (message, stream) delivery.
//
//	go build -o /tmp/careloop . && go run ./bench/chatlive -bin /tmp/careloop -conns 10000
//
// Both processes need a file descriptor per connection (ulimit -n).
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"careloop/bench/benchenv"
)

func main() {
	bin := flag.String("bin", "", "careloop binary (required)")
	conns := flag.Int("conns", 10000, "live staff streams to hold")
	messages := flag.Int("messages", 20, "patient messages to fan out")
	server := flag.String("mysql", "root@tcp(127.0.0.1:3306)/", "MySQL server DSN")
	redis := flag.String("redis", "127.0.0.1:6379", "Redis address")
	settle := flag.Duration("settle", 0, "after the fan-out, hold the streams this long and measure the server's RSS again (goroutine stacks shrink at the periodic GC)")
	pprofAddr := flag.String("pprof", "", "serve the server's pprof here and save its heap profile (with the streams open) to chatlive.heap")
	flag.Parse()
	if *bin == "" {
		log.Fatal("-bin is required")
	}
	dsn, drop := benchenv.Database(*server, "chatlive")
	defer drop()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	benchenv.Must(err)
	addr := ln.Addr().String()
	ln.Close()
	dir, _ := os.MkdirTemp("", "chatlive")
	defer os.RemoveAll(dir)
	cmd := exec.Command(*bin, "serve")
	cmd.Env = append(os.Environ(), "CARELOOP_MYSQL_DSN="+dsn, "CARELOOP_REDIS_ADDR="+*redis,
		fmt.Sprintf("CARELOOP_REDIS_PREFIX=chatlive-%d:", time.Now().UnixNano()), "CARELOOP_DATA_DIR="+dir,
		"CARELOOP_ADDR="+addr, "CARELOOP_LOG_LEVEL=warn", "CARELOOP_SERVE_WORKERS=false", "CARELOOP_PPROF_ADDR="+*pprofAddr)
	cmd.Stderr = os.Stderr
	benchenv.Must(cmd.Start())
	defer func() { _ = cmd.Process.Signal(os.Interrupt); _, _ = cmd.Process.Wait() }()
	base := "http://" + addr
	for i := 0; ; i++ {
		if res, err := http.Get(base + "/readyz"); err == nil && res.StatusCode == 200 {
			res.Body.Close()
			break
		}
		if i > 300 {
			log.Fatal("server did not start")
		}
		time.Sleep(100 * time.Millisecond)
	}
	idle := benchenv.RSSMiB(cmd.Process.Pid)

	staff := post(base+"/api/admin/login", "", map[string]string{"username": "admin", "password": "careloop-demo"})["token"].(string)
	patient := post(base+"/api/mp/login", "", map[string]string{"code": "dev:bench"})["token"].(string)
	cv := post(base+"/api/mp/conversations", patient, nil)
	convID := uint64(cv["id"].(float64))

	// Open the streams, 200 dials at a time.
	tr := &http.Transport{MaxIdleConnsPerHost: -1, DisableCompression: true}
	client := &http.Client{Transport: tr}
	received := make([][]int64, *messages) // [message][stream] = nanoseconds since the send began
	for i := range received {
		received[i] = make([]int64, *conns)
	}
	var sentAt [1 << 10]atomic.Int64 // message -> send start (UnixNano)
	var open atomic.Int64
	var counts = make([]atomic.Int64, *messages)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sem := make(chan struct{}, 200)
	var wg sync.WaitGroup
	openStart := time.Now()
	for s := 0; s < *conns; s++ {
		sem <- struct{}{}
		wg.Add(1)
		go func(s int) {
			defer wg.Done()
			req, _ := http.NewRequestWithContext(ctx, "GET", base+"/api/admin/conversations/stream", nil)
			req.Header.Set("Authorization", "Bearer "+staff)
			res, err := client.Do(req)
			<-sem
			if err != nil || res.StatusCode != 200 {
				log.Printf("stream %d: %v %v", s, err, res)
				return
			}
			defer res.Body.Close()
			open.Add(1)
			r := bufio.NewReaderSize(res.Body, 4096)
			for {
				line, err := r.ReadSlice('\n')
				if err != nil {
					return
				}
				if i := bytes.Index(line, []byte("bench-")); i >= 0 && bytes.HasPrefix(line, []byte("data: ")) {
					j := i + 6
					k := 0
					for j < len(line) && line[j] >= '0' && line[j] <= '9' {
						k = k*10 + int(line[j]-'0')
						j++
					}
					if k < *messages {
						atomic.StoreInt64(&received[k][s], time.Now().UnixNano()-sentAt[k].Load())
						counts[k].Add(1)
					}
				}
			}
		}(s)
	}
	for open.Load() < int64(*conns) && time.Since(openStart) < 2*time.Minute {
		time.Sleep(50 * time.Millisecond)
	}
	held := open.Load()
	fmt.Printf("streams open: %d of %d in %s; server says %s live connections\n", held, *conns, time.Since(openStart).Round(time.Millisecond), metric(base, "careloop_live_connections"))
	time.Sleep(time.Second)
	loaded := benchenv.RSSMiB(cmd.Process.Pid)
	if *pprofAddr != "" {
		for _, p := range []string{"heap", "heap?debug=1"} {
			res, err := http.Get("http://" + *pprofAddr + "/debug/pprof/" + p)
			benchenv.Must(err)
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			name := "chatlive.heap"
			if strings.Contains(p, "debug") {
				name += ".txt"
			}
			benchenv.Must(os.WriteFile(name, b, 0o644))
		}
	}

	var all, last []time.Duration
	for k := 0; k < *messages; k++ {
		sentAt[k].Store(time.Now().UnixNano())
		post(base+fmt.Sprintf("/api/mp/conversations/%d/messages", convID), patient, map[string]string{"content": fmt.Sprintf("bench-%d 您好", k)})
		deadline := time.Now().Add(30 * time.Second)
		for counts[k].Load() < held && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		var worst time.Duration
		for s := 0; s < *conns; s++ {
			if d := time.Duration(atomic.LoadInt64(&received[k][s])); d > 0 {
				all = append(all, d)
				worst = max(worst, d)
			}
		}
		last = append(last, worst)
		if got := counts[k].Load(); got < held {
			fmt.Printf("message %d reached only %d of %d streams\n", k, got, held)
		}
		time.Sleep(200 * time.Millisecond)
	}
	fmt.Printf("server RSS: %d MiB idle, %d MiB with %d streams (%.1f KiB per stream)\n", idle, loaded, held, float64(loaded-idle)*1024/float64(max(held, 1)))
	fmt.Printf("deliveries: %d (%d messages × %d streams)\n", len(all), *messages, held)
	fmt.Printf("per delivery: p50 %s, p99 %s, max %s\n", benchenv.Pct(all, 50), benchenv.Pct(all, 99), benchenv.Pct(all, 100))
	fmt.Printf("until the last stream had it, per message: median %s, worst %s\n", benchenv.Pct(last, 50), benchenv.Pct(last, 100))
	if *settle > 0 {
		time.Sleep(*settle)
		fmt.Printf("server RSS after %s more with %d streams: %d MiB\n", *settle, open.Load(), benchenv.RSSMiB(cmd.Process.Pid))
	}
	cancel()
	wg.Wait()
}

func post(url, token string, body any) map[string]any {
	var buf bytes.Buffer
	if body != nil {
		_ = json.NewEncoder(&buf).Encode(body)
	}
	req, _ := http.NewRequest("POST", url, &buf)
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	benchenv.Must(err)
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	if res.StatusCode >= 300 {
		log.Fatalf("%s: %d %s", url, res.StatusCode, raw)
	}
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return out
}

func metric(base, name string) string {
	res, err := http.Get(base + "/metrics")
	if err != nil {
		return "?"
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), name+" ") {
			return strings.TrimPrefix(sc.Text(), name+" ")
		}
	}
	return "?"
}
