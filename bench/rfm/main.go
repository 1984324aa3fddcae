// Command rfm measures a full RFM scoring and tiering run on MariaDB with
// generated data: p patients and b completed checkups spread over three
// years (those within the trailing 24 months count), some with coupons.
//
//	go run ./bench/rfm -patients 1000000 -bookings 3000000
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand"
	"strings"
	"time"

	_ "github.com/go-sql-driver/mysql"

	"careloop/bench/benchenv"
	"careloop/model"
)

func main() {
	patients := flag.Int("patients", 1000000, "patients")
	bookings := flag.Int("bookings", 3000000, "completed checkups")
	server := flag.String("mysql", "root@tcp(127.0.0.1:3306)/", "MySQL server DSN")
	flag.Parse()
	dsn, drop := benchenv.Database(*server, "rfmbench")
	defer drop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, _ := benchenv.Serve(ctx, map[string]string{"CARELOOP_MYSQL_DSN": dsn, "CARELOOP_DATA_DIR": "/tmp/careloop-rfmbench", "CARELOOP_DEMO_PATIENTS": "false"})
	defer a.Close()
	db := a.DB.Gorm()

	started := time.Now()
	var first uint64
	benchenv.Must(db.Raw("SELECT COALESCE(MAX(id), 0) FROM patients").Scan(&first).Error)
	const chunk = 5000
	now := time.Now().UTC()
	for start := 0; start < *patients; start += chunk {
		var sb strings.Builder
		sb.WriteString("INSERT INTO patients (name, gender, source, created_at, updated_at) VALUES ")
		for i := start; i < min(start+chunk, *patients); i++ {
			if i > start {
				sb.WriteByte(',')
			}
			fmt.Fprintf(&sb, "('p%d','unknown','bench','%s','%s')", i, now.Format(time.DateTime), now.Format(time.DateTime))
		}
		benchenv.Must(db.Exec(sb.String()).Error)
	}
	rng := rand.New(rand.NewSource(1))
	for start := 0; start < *bookings; start += chunk {
		var sb strings.Builder
		sb.WriteString("INSERT INTO bookings (code, patient_id, person_key, package_id, slot_id, date, status, price_fen, idempotency_key, completed_at, created_at, updated_at) VALUES ")
		for i := start; i < min(start+chunk, *bookings); i++ {
			if i > start {
				sb.WriteByte(',')
			}
			pid := first + 1 + uint64(rng.Intn(*patients))
			at := now.Add(-time.Duration(rng.Intn(3*365*24)) * time.Hour)
			fmt.Fprintf(&sb, "('B%010d',%d,'p:%d',1,1,'%s','%s',%d,'k%d','%s','%s','%s')", i, pid, pid, at.Format(time.DateOnly), model.BookingCompleted,
				30000+rng.Intn(40)*10000, i, at.Format(time.DateTime), at.Format(time.DateTime), at.Format(time.DateTime))
		}
		benchenv.Must(db.Exec(sb.String()).Error)
	}
	fmt.Printf("generated %d patients and %d completed checkups in %s\n", *patients, *bookings, time.Since(started).Round(time.Second))

	run := model.RFMRun{Status: model.RFMQueued, CreatedAt: time.Now().UTC()}
	benchenv.Must(db.Create(&run).Error)
	t := time.Now()
	for {
		var got model.RFMRun
		benchenv.Must(db.Where("id = ?", run.ID).Take(&got).Error)
		if got.Status == model.RFMDone || got.Status == model.RFMFailed {
			fmt.Printf("RFM run over %d patients with checkups: %s in %s; tiers %s\n", got.Patients, got.Status, time.Since(t).Round(100*time.Millisecond), got.Tiers)
			if got.LastError != "" {
				fmt.Println("error:", got.LastError)
			}
			break
		}
		if did, err := a.RFM.RunOnce(ctx); err != nil || did {
			benchenv.Must(err)
			continue
		}
		time.Sleep(200 * time.Millisecond)
	}
}
