// Command segments measures segments and campaigns on MariaDB with
// generated data: the live count of typical segments (p50/p95 over
// repeated counts) and the preparation of a campaign's recipients.
//
//	go run ./bench/segments -patients 1000000 -bookings 3000000 -recipients 200000
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand"
	"slices"
	"sort"
	"strings"
	"time"

	"careloop/app"
	"careloop/bench/benchenv"
	"careloop/model"
	"careloop/service"
	"careloop/wxsandbox"

	"gorm.io/gorm"
)

func main() {
	patients := flag.Int("patients", 1000000, "patients")
	bookings := flag.Int("bookings", 3000000, "bookings (mostly completed, over three years)")
	recipients := flag.Int("recipients", 200000, "patients in the campaign's segment")
	rounds := flag.Int("rounds", 10, "counts per segment")
	server := flag.String("mysql", "root@tcp(127.0.0.1:3306)/", "MySQL server DSN")
	reuse := flag.String("db", "", "a database a previous run left (killed before it could drop it): skip generating")
	batch := flag.Int("batch", 0, "patients per campaign preparation batch (0: careloop's default)")
	noWindow := flag.Bool("no-window", false, "leave out the segment with within_days (it reads every booking: minutes at 3,000,000)")
	campaignOnly := flag.Bool("campaign-only", false, "measure the campaign only")
	index := flag.Bool("visit-index", false, "add an index on bookings (status, patient_id, date) first (an experiment: careloop's schema lacks it)")
	flag.Parse()
	dsn, drop := benchenv.Database(*server, "segbench")
	if *reuse != "" {
		drop()
		dsn = strings.TrimSuffix(*server, "/") + "/" + *reuse
	} else {
		defer drop()
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	env := map[string]string{"CARELOOP_MYSQL_DSN": dsn, "CARELOOP_DATA_DIR": "/tmp/careloop-segbench", "CARELOOP_DEMO_PATIENTS": "false", "CARELOOP_QUIET_HOURS": "00:00-00:00"}
	cfg, err := app.Load("", func(k string) string { return env[k] })
	benchenv.Must(err)
	a, err := app.New(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	benchenv.Must(err)
	defer a.Close()
	db := a.DB.Gorm()

	if *reuse == "" {
		started := time.Now()
		generate(db, *patients, *bookings, *recipients)
		fmt.Printf("generated %d patients, %d bookings and their tags, followers, credits and consents in %s\n", *patients, *bookings, time.Since(started).Round(time.Second))
	}

	if *index {
		t := time.Now()
		benchenv.Must(db.Exec("CREATE INDEX idx_bench_visits ON bookings (status, patient_id, date)").Error)
		fmt.Printf("index on bookings (status, patient_id, date): %s\n", time.Since(t).Round(100*time.Millisecond))
	}
	t := time.Now()
	var runs int64
	benchenv.Must(db.Model(&model.RFMRun{}).Where("status = ?", model.RFMDone).Count(&runs).Error)
	if runs == 0 {
		run := model.RFMRun{Status: model.RFMQueued, CreatedAt: time.Now().UTC()}
		benchenv.Must(db.Create(&run).Error)
		for {
			did, err := a.RFM.RunOnce(ctx)
			benchenv.Must(err)
			if !did {
				break
			}
		}
		fmt.Printf("RFM run: %s\n", time.Since(t).Round(100*time.Millisecond))
	}
	t = time.Now()
	benchenv.Must(a.Visits.Refresh(ctx))
	fmt.Printf("visit summaries built: %s\n", time.Since(t).Round(100*time.Millisecond))

	mkt := service.Principal{Kind: model.SubjectStaff, ID: 1, Role: model.RoleMarketing}
	c := func(field, op, value string) service.SegmentCondition {
		return service.SegmentCondition{Field: field, Op: op, Value: []byte(value)}
	}
	all := func(cs ...service.SegmentCondition) service.SegmentConditions {
		return service.SegmentConditions{Match: "all", Groups: []service.SegmentGroup{{Match: "all", Conditions: cs}}}
	}
	segments := []struct {
		name string
		cond service.SegmentConditions
	}{
		{"gold, due for the re-check, nothing booked", all(c("rfm.tier", "in", `["gold"]`), c("booking.days_since_last", "gte", "365"), c("booking.upcoming", "eq", "false"))},
		{"women 30-50 in Zhejiang", all(c("gender", "eq", `"female"`), c("age", "between", "[30,50]"), c("region", "in", `["33"]`))},
		{"tag and following", all(c("tag", "any", "[1]"), c("wechat.follower", "eq", "true"))},
		{"2+ checkups", all(c("booking.count", "gte", "2"))},
		{"2+ checkups in two years", service.SegmentConditions{Match: "all", Groups: []service.SegmentGroup{{Match: "all", Conditions: []service.SegmentCondition{{Field: "booking.count", Op: "gte", Value: []byte("2"), WithinDays: 730}}}}}},
		{"a credit or following (OR)", service.SegmentConditions{Match: "all", Groups: []service.SegmentGroup{{Match: "any", Conditions: []service.SegmentCondition{
			c("wechat.credit", "has", `"sbx-tmpl-marketing"`), c("wechat.follower", "eq", "true")}}}}},
		{"missed a checkup, platinum or gold", all(c("booking.no_shows", "gte", "1"), c("rfm.tier", "in", `["platinum","gold"]`))},
		{"points 500+ and package 2", all(c("points", "gte", "500"), c("booking.package", "any", "[2]"))},
	}
	if *campaignOnly {
		segments = nil
	}
	if *noWindow {
		segments = slices.DeleteFunc(segments, func(s struct {
			name string
			cond service.SegmentConditions
		}) bool {
			return strings.Contains(s.name, "two years")
		})
	}
	var worst time.Duration
	for _, s := range segments {
		var ds []time.Duration
		var n int64
		for i := 0; i < *rounds; i++ {
			t := time.Now()
			n, _, err = a.Segments.Preview(ctx, mkt, "marketing", s.cond)
			benchenv.Must(err)
			ds = append(ds, time.Since(t))
		}
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		p95 := benchenv.Pct(ds, 95)
		worst = max(worst, p95)
		fmt.Printf("segment %-45s %8d patients  count+sample p50 %6s  p95 %6s\n", s.name, n, benchenv.Pct(ds, 50).Round(time.Millisecond), p95.Round(time.Millisecond))
	}
	fmt.Printf("worst segment p95: %s (target < 1 s)\n", worst.Round(time.Millisecond))

	// A campaign to the recipients' segment (tag 2): prepared batch by batch.
	seg, err := a.Segments.Create(ctx, mkt, service.SegmentInput{Name: fmt.Sprintf("campaign target %d", time.Now().Unix()), Purpose: model.SegmentMarketing, Conditions: all(c("tag", "any", "[2]"))})
	benchenv.Must(err)
	camp, err := a.Campaigns.Create(ctx, mkt, service.CampaignInput{Name: "bench", SegmentID: seg.ID, Channel: model.CampaignSubscribe, TemplateID: "sbx-tmpl-marketing",
		Message: service.CampaignVariant{Data: map[string]string{"thing1": "年度体检季"}}})
	benchenv.Must(err)
	if *batch > 0 {
		a.Campaigns.Batch = *batch
	}
	_, err = a.Campaigns.Start(ctx, mkt, camp.ID)
	benchenv.Must(err)
	// Preparation ends when the campaign leaves "preparing" (the round goes
	// on to follow the sending and attribute conversions: not measured).
	t = time.Now()
	go func() {
		for ctx.Err() == nil {
			_, err := a.Campaigns.Work(ctx)
			benchenv.Must(err)
		}
	}()
	for {
		var cur model.Campaign
		benchenv.Must(db.Where("id = ?", camp.ID).Take(&cur).Error)
		if cur.Status != model.CampaignPreparing && cur.Status != model.CampaignScheduled {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	took := time.Since(t)
	counts, err := a.Campaigns.Counts(ctx, mkt, camp.ID)
	benchenv.Must(err)
	// Then sent at the configured rate, not faster: the dispatcher runs for
	// a while against the sandbox.
	sendFor := 15 * time.Second
	before := a.Sandbox.Calls(wxsandbox.APISubscribeSend)
	dctx, stop := context.WithTimeout(ctx, sendFor)
	_ = a.Dispatcher.Run(dctx)
	stop()
	sent := a.Sandbox.Calls(wxsandbox.APISubscribeSend) - before
	fmt.Printf("sending: %d subscribe-message calls in %s = %.0f/s (configured rate %d/s per WeChat API)\n", sent, sendFor, float64(sent)/sendFor.Seconds(), cfg.NotifyRate)
	fmt.Printf("campaign: %d recipients prepared (%d queued with a message, skipped %v) in %s (target < 20 s for 200,000)\n",
		counts.Recipients, counts.Queued, counts.Skipped, took.Round(100*time.Millisecond))
}

// generate writes the population: patients with gender, birth date and
// region; bookings over three years (completed mostly, some no-shows, some
// booked ahead); tag 1 on a tenth, tag 2 on the campaign's recipients;
// followers, marketing consents, subscribe credits and points.
func generate(db *gorm.DB, patients, bookings, recipients int) {
	var flush int
	benchenv.Must(db.Raw("SELECT @@GLOBAL.innodb_flush_log_at_trx_commit").Scan(&flush).Error)
	benchenv.Must(db.Exec("SET GLOBAL innodb_flush_log_at_trx_commit = 2").Error)
	defer db.Exec(fmt.Sprintf("SET GLOBAL innodb_flush_log_at_trx_commit = %d", flush))
	rng := rand.New(rand.NewSource(1))
	now := time.Now().UTC()
	ts := now.Format(time.DateTime)
	benchenv.Must(db.Exec("INSERT INTO tags (id, name, category, kind, created_at) VALUES (1, 't1', 'basic', 'fact', ?), (2, 't2', 'basic', 'fact', ?)", now, now).Error)
	var first uint64
	benchenv.Must(db.Raw("SELECT COALESCE(MAX(id), 0) FROM patients").Scan(&first).Error)
	every := max(1, patients/max(recipients, 1))
	const chunk = 5000
	regions := []string{"330106", "330102", "330205", "110105", "310115", "440305", "320106", "510107"}
	batch := func(head string, n int, row func(i int) string) {
		for start := 0; start < n; start += chunk {
			var sb strings.Builder
			sb.WriteString(head)
			k := 0
			for i := start; i < min(start+chunk, n); i++ {
				r := row(i)
				if r == "" {
					continue
				}
				if k > 0 {
					sb.WriteByte(',')
				}
				sb.WriteString(r)
				k++
			}
			if k > 0 {
				benchenv.Must(db.Exec(sb.String()).Error)
			}
		}
	}
	target := func(i int) bool { return i%every == 0 && i/every < recipients }
	mp := func(i int) bool { return target(i) || i%10 < 3 }
	batch("INSERT INTO patients (name, gender, birth_date, region_code, source, open_id, created_at, updated_at) VALUES ", patients, func(i int) string {
		g := []string{"male", "female"}[rng.Intn(2)]
		birth := now.AddDate(-18-rng.Intn(60), 0, -rng.Intn(365)).Format(time.DateOnly)
		open := "NULL"
		if mp(i) {
			open = fmt.Sprintf("'mp-%d'", i)
		}
		return fmt.Sprintf("('p%d','%s','%s','%s','bench',%s,'%s','%s')", i, g, birth, regions[rng.Intn(len(regions))], open, ts, ts)
	})
	pid := func(i int) uint64 { return first + 1 + uint64(i) }
	batch("INSERT IGNORE INTO bookings (code, patient_id, person_key, active_day, package_id, slot_id, date, status, price_fen, idempotency_key, completed_at, created_at, updated_at) VALUES ", bookings, func(i int) string {
		p := pid(rng.Intn(patients))
		at := now.Add(-time.Duration(rng.Intn(3*365*24)) * time.Hour)
		status, active, done := model.BookingCompleted, "NULL", fmt.Sprintf("'%s'", at.Format(time.DateTime))
		switch r := rng.Intn(100); {
		case r < 4:
			status, done = model.BookingNoShow, "NULL"
		case r < 6:
			at = now.Add(time.Duration(1+rng.Intn(30*24)) * time.Hour)
			status, done = model.BookingBooked, "NULL"
			active = fmt.Sprintf("'%s'", at.Format(time.DateOnly))
		}
		made := at
		if made.After(now) { // a booking ahead was made before now
			made = now
		}
		return fmt.Sprintf("('B%010d',%d,'p:%d',%s,%d,1,'%s','%s',%d,'k%d',%s,'%s','%s')", i, p, p, active, 1+rng.Intn(4), at.Format(time.DateOnly), status,
			30000+rng.Intn(40)*10000, i, done, made.Format(time.DateTime), made.Format(time.DateTime))
	})
	batch("INSERT INTO patient_tags (patient_id, tag_id, assigned_by, assigned_at) VALUES ", patients, func(i int) string {
		switch {
		case target(i):
			return fmt.Sprintf("(%d,2,0,'%s')", pid(i), ts)
		case i%10 == 1: // a tenth, most of them following
			return fmt.Sprintf("(%d,1,0,'%s')", pid(i), ts)
		}
		return ""
	})
	batch("INSERT INTO consents (patient_id, kind, version, granted, ip, created_at) VALUES ", patients, func(i int) string {
		if (target(i) && (i/every)%10 != 9) || (!target(i) && i%5 < 2) {
			return fmt.Sprintf("(%d,'marketing','2026-11',1,'bench','%s')", pid(i), ts)
		}
		return ""
	})
	batch("INSERT INTO subscribe_credits (patient_id, template_id, credits, updated_at) VALUES ", patients, func(i int) string {
		if mp(i) && i%7 != 3 {
			return fmt.Sprintf("(%d,'sbx-tmpl-marketing',%d,'%s')", pid(i), 1+rng.Intn(3), ts)
		}
		return ""
	})
	batch("INSERT INTO followers (open_id, patient_id, subscribed, scene, subscribed_at, updated_at) VALUES ", patients, func(i int) string {
		if i%10 < 3 || i%10 == 7 || i%20 == 5 {
			return fmt.Sprintf("('oa-%d',%d,1,'bench','%s','%s')", i, pid(i), ts, ts)
		}
		return ""
	})
	batch("INSERT INTO points_accounts (patient_id, balance, growth, updated_at) VALUES ", patients, func(i int) string {
		if i%4 == 0 {
			return fmt.Sprintf("(%d,%d,%d,'%s')", pid(i), rng.Intn(2000), rng.Intn(5000), ts)
		}
		return ""
	})
}
