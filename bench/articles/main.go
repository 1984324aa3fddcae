// Command articles measures self-media on the fully wired careloop on
// MariaDB with the in-process WeChat sandbox:
//
//  1. the mini-program's article list (GET /api/mp/articles, 20 a page) from
//     c concurrent patients: requests a second, p50, p99;
//
//  2. a mass send to a tag of f followers: the time from the request until
//     its batches are prepared (recipients resolved, monthly counts kept),
//     and WeChat's per-minute limit kept while the batches go out.
//
//     go run ./bench/articles -n 30000 -c 32 -followers 100000
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"strconv"
	"time"

	_ "github.com/go-sql-driver/mysql"

	"careloop/bench/benchenv"
	"careloop/model"
	"careloop/service"
	"careloop/wxsandbox"
)

func main() {
	n := flag.Int("n", 30000, "list requests")
	c := flag.Int("c", 32, "concurrent clients")
	followers := flag.Int("followers", 100000, "followers with the tag")
	server := flag.String("mysql", "root@tcp(127.0.0.1:3306)/", "MySQL server DSN")
	flag.Parse()
	dsn, drop := benchenv.Database(*server, "abench")
	defer drop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, base := benchenv.Serve(ctx, map[string]string{"CARELOOP_MYSQL_DSN": dsn, "CARELOOP_DATA_DIR": "/tmp/careloop-abench",
		"CARELOOP_SANDBOX_JOB_DELAY": "50ms"})
	defer a.Close()
	db := a.DB.Gorm()

	// 60 published articles with covers, in four categories.
	cover := model.MediaFile{Key: "0123456789abcdef0123456789abcdef.png", Mime: "image/png", Size: 1, Width: 900, Height: 383, CreatedAt: time.Now()}
	benchenv.Must(db.Create(&cover).Error)
	now := time.Now()
	cats := []string{"science", "guide", "news", "activity"}
	for i := 0; i < 60; i++ {
		benchenv.Must(db.Create(&model.Article{Title: fmt.Sprintf("体检须知第 %d 篇", i), Author: "体检中心", Digest: "体检前的准备与注意事项",
			Content: "<p>正文</p>", CoverFileID: cover.ID, Category: cats[i%4], Status: model.ArticlePublished, Version: 1,
			PublishedVersion: 1, PublishedAt: &now, ArticleURL: "https://mp.weixin.qq.com/s/x"}).Error)
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: *c}}
	tokens := make([]string, *c)
	for i := range tokens {
		body, _ := json.Marshal(map[string]string{"code": "dev:abench-" + strconv.Itoa(i)})
		res, err := client.Post(base+"/api/mp/login", "application/json", bytes.NewReader(body))
		benchenv.Must(err)
		var out struct{ Token string }
		benchenv.Must(json.NewDecoder(res.Body).Decode(&out))
		res.Body.Close()
		tokens[i] = out.Token
	}
	// Warm up, then measure.
	benchenv.Requests(client, 500, *c, 200, func(i int) *http.Request {
		req, _ := http.NewRequest("GET", base+"/api/mp/articles?limit=20", nil)
		req.Header.Set("Authorization", "Bearer "+tokens[i%len(tokens)])
		return req
	})
	lat, failed, el := benchenv.Requests(client, *n, *c, 200, func(i int) *http.Request {
		q := ""
		if i%2 == 1 {
			q = "&category=" + cats[i%4]
		}
		req, _ := http.NewRequest("GET", base+"/api/mp/articles?limit=20"+q, nil)
		req.Header.Set("Authorization", "Bearer "+tokens[i%len(tokens)])
		return req
	})
	fmt.Printf("mini-program article list, %d requests, %d clients, MariaDB: %.0f req/s, p50 %s, p99 %s, non-200: %d\n",
		*n, *c, float64(*n)/el.Seconds(), benchenv.Pct(lat, 50), benchenv.Pct(lat, 99), failed)

	// A tag of followers.
	tag := model.Tag{Name: "大客户", Category: "basic", Kind: "fact"}
	benchenv.Must(db.Create(&tag).Error)
	const chunk = 2000
	for start := 0; start < *followers; start += chunk {
		end := min(start+chunk, *followers)
		ps := make([]model.Patient, 0, end-start)
		for i := start; i < end; i++ {
			ps = append(ps, model.Patient{Name: fmt.Sprintf("f%06d", i), Gender: "unknown", Source: "bench"})
		}
		benchenv.Must(db.CreateInBatches(ps, 1000).Error)
		fs := make([]model.Follower, 0, len(ps))
		ts := make([]model.PatientTag, 0, len(ps))
		for _, p := range ps {
			pid := p.ID
			a.Sandbox.SetFollower(a.Cfg.OAAppID, fmt.Sprintf("oa-f%d", p.ID), true, "")
			fs = append(fs, model.Follower{OpenID: fmt.Sprintf("oa-f%d", p.ID), PatientID: &pid, Subscribed: true, SubscribedAt: now})
			ts = append(ts, model.PatientTag{PatientID: p.ID, TagID: tag.ID, AssignedAt: now})
		}
		benchenv.Must(db.CreateInBatches(fs, 1000).Error)
		benchenv.Must(db.CreateInBatches(ts, 1000).Error)
	}
	a.Sandbox.Reset()
	started := time.Now()
	m, err := a.MassSends.Create(ctx, service.System, service.MassInput{Text: "感恩回馈：年度体检 8 折", Target: service.MassTarget{TagID: &tag.ID}})
	benchenv.Must(err)
	var prepared time.Duration
	for {
		var got model.MassSend
		benchenv.Must(db.Where("id = ?", m.ID).Take(&got).Error)
		if got.Status != model.MassQueued {
			prepared = time.Since(started)
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	var done model.MassSend
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		benchenv.Must(db.Where("id = ?", m.ID).Take(&done).Error)
		if done.Status == model.MassDone || done.Status == model.MassFailed {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	refused := 0
	for _, s := range a.Sandbox.Sent() {
		if s.ErrCode == wxsandbox.CodeMinuteQuota {
			refused++
		}
	}
	fmt.Printf("mass send to a tag of %d followers: prepared (%d batches) in %s; ended %s after the request with status %s, sent %d; "+
		"%d mass/send calls, %d refused for the per-minute limit\n",
		*followers, done.Batches, prepared.Round(time.Millisecond), time.Since(started).Round(time.Millisecond), done.Status, done.Sent,
		a.Sandbox.Calls(wxsandbox.APIMassSend), refused)
}
