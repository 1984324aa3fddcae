package main

import (
	"context"
	"fmt"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
	"time"

	"careloop/model"
	"careloop/notify"
	"careloop/testenv"
	"careloop/wxsandbox"
)

// startWorker runs `careloop worker` as a child process.
func startWorker(t *testing.T, env []string) *child {
	t.Helper()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	c := &child{addr: addr, out: &syncBuffer{}}
	c.cmd = exec.Command(os.Args[0], "worker")
	c.cmd.Env = append(os.Environ(), append(env, "CARELOOP_TEST_CHILD=1", "CARELOOP_ADDR="+addr)...)
	c.cmd.Stdout, c.cmd.Stderr = c.out, c.out
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = c.cmd.Process.Kill()
		_, _ = c.cmd.Process.Wait()
	})
	return c
}

var clientMsgID = regexp.MustCompile(`"client_msg_id":"careloop-(\d+)"`)

// Three workers share 10,000 notifications; one is killed with SIGKILL
// mid-run and Redis is restarted mid-run. Every notification is delivered
// exactly once (counted by its client message id in the sandbox) and none
// is lost.
func TestWorkersSurviveKillAndRedisRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping the multi-process dispatcher test in -short mode")
	}
	const patients, perPatient = 500, 20
	dsn := testenv.NewMySQLDatabase(t)
	redisPort := testenv.FreePort(t)
	redis := testenv.StartRedis(t, redisPort)

	sb := wxsandbox.New(wxsandbox.Options{
		Apps: []wxsandbox.App{
			{AppID: "wxe2emp", Secret: "e2e-mp-secret", Kind: wxsandbox.MiniProgram},
			{AppID: "wxe2eoa", Secret: "e2e-oa-secret", Kind: wxsandbox.OfficialAccount},
		},
		Templates: []wxsandbox.Template{{ID: "sbx-oa-tmpl-service"}, {ID: "sbx-tmpl-booking-confirmed"}},
	})
	srv := httptest.NewServer(sb.Handler())
	defer srv.Close()

	// The outbox: 10,000 booking confirmations for followers (template channel).
	ctx := context.Background()
	db, err := model.Open(ctx, model.OpenOptions{MySQLDSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	out := notify.NewOutbox(db, notify.DefaultConfig(), nil, nil)
	var notices []notify.Notice
	for i := 0; i < patients; i++ {
		openID := fmt.Sprintf("p%04d", i)
		p := model.Patient{OpenID: &openID, Name: openID, Gender: "unknown"}
		db.Gorm().Create(&p)
		pid := p.ID
		db.Gorm().Create(&model.Follower{OpenID: "oa-" + openID, PatientID: &pid, Subscribed: true, SubscribedAt: time.Now()})
		sb.SetFollower("wxe2eoa", "oa-"+openID, true, "")
		for j := 0; j < perPatient; j++ {
			notices = append(notices, notify.Notice{PatientID: pid, Reason: notify.ReasonBookingConfirmed, Occurrence: fmt.Sprint(j),
				Params: map[string]string{"package": "年度体检", "time": "2026-12-01T08:30:00+08:00"}})
		}
	}
	if err := out.EnqueueMany(ctx, notices); err != nil {
		t.Fatal(err)
	}
	total := patients * perPatient

	env := []string{
		"CARELOOP_MYSQL_DSN=" + dsn, "CARELOOP_REDIS_ADDR=127.0.0.1:" + strconv.Itoa(redisPort),
		"CARELOOP_WECHAT_API_BASE=" + srv.URL, "CARELOOP_MYSQL_MAX_CONNS=12", "CARELOOP_DATA_DIR=" + t.TempDir(), "CARELOOP_LOG_LEVEL=warn",
		"CARELOOP_MP_APPID=wxe2emp", "CARELOOP_MP_SECRET=e2e-mp-secret", "CARELOOP_OA_APPID=wxe2eoa", "CARELOOP_OA_SECRET=e2e-oa-secret",
		"CARELOOP_NOTIFY_LEASE=5s", "CARELOOP_NOTIFY_RATE=100000", "CARELOOP_QUIET_HOURS=", "CARELOOP_DEMO_PATIENTS=false",
	}
	workers := []*child{startWorker(t, env), startWorker(t, env), startWorker(t, env)}

	delivered := func() int { return sb.DeliveredCount() }
	waitFor := func(what string, cond func() bool, within time.Duration) {
		t.Helper()
		deadline := time.Now().Add(within)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s (delivered %d of %d)\n%s", what, delivered(), total, workers[0].out.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor("a third delivered", func() bool { return delivered() >= total/3 }, 90*time.Second)
	_ = workers[0].cmd.Process.Kill() // SIGKILL: no chance to hand anything back
	t.Logf("killed one worker at %d delivered", delivered())

	waitFor("two thirds delivered", func() bool { return delivered() >= 2*total/3 }, 90*time.Second)
	_ = redis.Process.Kill()
	_, _ = redis.Process.Wait()
	t.Logf("stopped Redis at %d delivered", delivered())
	time.Sleep(time.Second)
	testenv.StartRedis(t, redisPort)
	t.Logf("Redis back at %d delivered", delivered())

	var open int64
	defer func() {
		if t.Failed() {
			var left []struct {
				Status, LastError string
				N                 int
			}
			db.Gorm().Model(&model.Notification{}).Select("status, last_error, COUNT(*) AS n").Where("status <> ?", model.NotifySent).
				Group("status, last_error").Scan(&left)
			t.Logf("not sent: %+v", left)
		}
	}()
	waitFor("every notification to be finished", func() bool {
		db.Gorm().Model(&model.Notification{}).Where("status <> ?", model.NotifySent).Count(&open)
		return open == 0
	}, 120*time.Second)

	counts := map[string]int{}
	for _, m := range sb.Delivered() {
		if mm := clientMsgID.FindSubmatch(m.Payload); mm != nil {
			counts[string(mm[1])]++
		}
	}
	var ids []uint64
	db.Gorm().Model(&model.Notification{}).Pluck("id", &ids)
	lost, dup := 0, 0
	for _, id := range ids {
		switch n := counts[strconv.FormatUint(id, 10)]; {
		case n == 0:
			lost++
		case n > 1:
			dup++
		}
	}
	if len(ids) != total || lost != 0 || dup != 0 || sb.DeliveredCount() != total {
		t.Fatalf("%d rows, %d delivered messages: %d lost, %d delivered more than once", len(ids), sb.DeliveredCount(), lost, dup)
	}
}
