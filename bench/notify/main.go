// Command notify benchmarks the dispatcher end to end: N notifications in
// MariaDB delivered by two `careloop worker` processes (sharing Redis) to
// the WeChat sandbox, next to the ceiling of a bare Go loop posting the same
// sends to the same sandbox in the same run. It samples the workers' RSS to
// show whether memory stays flat.
//
//	go build -o /tmp/careloop . && go run ./bench/notify -bin /tmp/careloop -n 20000
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	_ "github.com/go-sql-driver/mysql"

	"careloop/bench/benchenv"
	"careloop/model"
	"careloop/notify"
	"careloop/wxsandbox"
)

func main() {
	bin := flag.String("bin", "", "careloop binary (required)")
	n := flag.Int("n", 20000, "notifications")
	workers := flag.Int("workers", 2, "worker processes")
	conc := flag.Int("concurrency", 32, "sends in flight per worker (and goroutines of the bare loop)")
	server := flag.String("mysql", "root@tcp(127.0.0.1:3306)/", "MySQL server DSN")
	redis := flag.String("redis", "127.0.0.1:6379", "Redis address")
	flag.Parse()
	if *bin == "" {
		log.Fatal("-bin is required")
	}
	sb := wxsandbox.New(wxsandbox.Options{
		Apps: []wxsandbox.App{
			{AppID: "wxbenchmp", Secret: "mp", Kind: wxsandbox.MiniProgram},
			{AppID: "wxbenchoa", Secret: "oa", Kind: wxsandbox.OfficialAccount},
		},
		Templates: []wxsandbox.Template{{ID: "sbx-oa-tmpl-service"}, {ID: "sbx-tmpl-booking-confirmed"}},
	})
	srv := httptest.NewServer(sb.Handler())
	defer srv.Close()
	const patients = 1000
	for i := 0; i < patients; i++ {
		sb.SetFollower("wxbenchoa", fmt.Sprintf("oa-b%04d", i), true, "")
	}

	ceiling := bareLoop(srv.URL, *n, *workers**conc)
	sb.Reset()

	// A fresh database with the outbox filled.
	ctx := context.Background()
	dsn, drop := benchenv.Database(*server, "bench")
	defer drop()
	db, err := model.Open(ctx, model.OpenOptions{MySQLDSN: dsn})
	benchenv.Must(err)
	benchenv.Must(db.Migrate(ctx))
	var notices []notify.Notice
	for i := 0; i < patients; i++ {
		openID := fmt.Sprintf("b%04d", i)
		p := model.Patient{OpenID: &openID, Name: openID, Gender: "unknown"}
		benchenv.Must(db.Gorm().Create(&p).Error)
		pid := p.ID
		benchenv.Must(db.Gorm().Create(&model.Follower{OpenID: "oa-" + openID, PatientID: &pid, Subscribed: true, SubscribedAt: time.Now()}).Error)
	}
	var ids []uint64
	if err := db.Gorm().Model(&model.Patient{}).Order("id").Pluck("id", &ids).Error; err != nil {
		log.Fatal(err)
	}
	for i := 0; i < *n; i++ {
		notices = append(notices, notify.Notice{PatientID: ids[i%patients], Reason: notify.ReasonBookingConfirmed, Occurrence: fmt.Sprint(i),
			Params: map[string]string{"package": "年度体检", "time": "2026-12-01T08:30:00+08:00"}})
	}
	out := notify.NewOutbox(db, notify.DefaultConfig(), nil, nil)
	for i := 0; i < len(notices); i += 5000 {
		benchenv.Must(out.EnqueueMany(ctx, notices[i:min(i+5000, len(notices))]))
	}

	env := append(os.Environ(),
		"CARELOOP_MYSQL_DSN="+dsn, "CARELOOP_REDIS_ADDR="+*redis, fmt.Sprintf("CARELOOP_REDIS_PREFIX=bench-%d:", time.Now().UnixNano()),
		"CARELOOP_WECHAT_API_BASE="+srv.URL, "CARELOOP_DATA_DIR="+os.TempDir(), "CARELOOP_LOG_LEVEL=warn",
		"CARELOOP_MP_APPID=wxbenchmp", "CARELOOP_MP_SECRET=mp", "CARELOOP_OA_APPID=wxbenchoa", "CARELOOP_OA_SECRET=oa",
		"CARELOOP_NOTIFY_RATE=1000000", "CARELOOP_QUIET_HOURS=", fmt.Sprintf("CARELOOP_NOTIFY_CONCURRENCY=%d", *conc))
	start := time.Now()
	var procs []*exec.Cmd
	for i := 0; i < *workers; i++ {
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		addr := ln.Addr().String()
		ln.Close()
		cmd := exec.Command(*bin, "worker")
		cmd.Env = append(env, "CARELOOP_ADDR="+addr)
		cmd.Stderr = os.Stderr
		benchenv.Must(cmd.Start())
		procs = append(procs, cmd)
	}
	defer func() {
		for _, p := range procs {
			_ = p.Process.Signal(os.Interrupt)
			_, _ = p.Process.Wait()
		}
	}()
	var rss []string
	lastSample := time.Time{}
	var firstAt time.Time
	for {
		d := sb.DeliveredCount()
		if d > 0 && firstAt.IsZero() {
			firstAt = time.Now()
		}
		if time.Since(lastSample) > time.Second || d >= *n {
			var parts []string
			for _, p := range procs {
				parts = append(parts, fmt.Sprintf("%dMiB", benchenv.RSSMiB(p.Process.Pid)))
			}
			rss = append(rss, fmt.Sprintf("%6d sent: %s", d, strings.Join(parts, " ")))
			lastSample = time.Now()
		}
		if d >= *n {
			break
		}
		if time.Since(start) > 15*time.Minute {
			log.Fatalf("gave up after 15 minutes at %d delivered", d)
		}
		time.Sleep(20 * time.Millisecond)
	}
	elapsed := time.Since(start)
	e2e := float64(*n) / elapsed.Seconds()
	fmt.Printf("notifications: %d, workers: %d x %d in flight\n", *n, *workers, *conc)
	fmt.Printf("ceiling (bare Go loop, %d goroutines -> sandbox): %.0f sends/s\n", *workers**conc, ceiling)
	fmt.Printf("end to end (outbox on MariaDB + Redis -> workers -> sandbox): %.0f notifications/s (%.1fs, incl. worker start-up)\n", e2e, elapsed.Seconds())
	steady := float64(*n-1) / time.Since(firstAt).Seconds()
	fmt.Printf("steady state (first to last delivery): %.0f notifications/s\n", steady)
	fmt.Printf("ratio: %.2f (steady state: %.2f)\n", e2e/ceiling, steady/ceiling)
	fmt.Println("worker RSS while running:")
	for _, l := range rss {
		fmt.Println("  " + l)
	}
}

// bareLoop posts n template sends straight to the sandbox from c
// goroutines: the most the sandbox and this machine allow.
func bareLoop(base string, n, c int) float64 {
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	body, _ := json.Marshal(map[string]any{"grant_type": "client_credential", "appid": "wxbenchoa", "secret": "oa"})
	res, err := http.Post(base+"/cgi-bin/stable_token", "application/json", bytes.NewReader(body))
	benchenv.Must(err)
	benchenv.Must(json.NewDecoder(res.Body).Decode(&tok))
	res.Body.Close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: c}}
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for g := 0; g < c; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(n) {
					return
				}
				msg, _ := json.Marshal(map[string]any{"touser": fmt.Sprintf("oa-b%04d", i%1000), "template_id": "sbx-oa-tmpl-service",
					"client_msg_id": fmt.Sprintf("bare-%d", i), "data": map[string]any{"first": map[string]string{"value": "x"}}})
				res, err := client.Post(base+"/cgi-bin/message/template/send?access_token="+tok.AccessToken, "application/json", bytes.NewReader(msg))
				if err != nil {
					log.Fatal(err)
				}
				res.Body.Close()
			}
		}()
	}
	wg.Wait()
	return float64(n) / time.Since(start).Seconds()
}
