// Command booking benchmarks booking on one hot slot through HTTP at 64
// concurrent clients (the fully wired careloop on MariaDB + Redis), next to
// the ceiling measured in the same run on the same database: a bare Go loop
// doing only the conditional update + insert transaction. It also measures
// slot listing.
//
//	go run ./bench/booking -n 5000
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"time"

	_ "github.com/go-sql-driver/mysql"
	"gorm.io/gorm"

	"careloop/bench/benchenv"
	"careloop/model"
)

func main() {
	n := flag.Int("n", 5000, "bookings (one per patient)")
	c := flag.Int("c", 64, "concurrent clients")
	server := flag.String("mysql", "root@tcp(127.0.0.1:3306)/", "MySQL server DSN")
	redis := flag.String("redis", "127.0.0.1:6379", "Redis address")
	listFor := flag.Duration("list", 5*time.Second, "how long to measure slot listing")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the HTTP booking phase")
	listprofile := flag.String("listprofile", "", "write a CPU profile of the slot-listing phase")
	flag.Parse()

	dsn, drop := benchenv.Database(*server, "bbench")
	defer drop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, base := benchenv.Serve(ctx, map[string]string{"CARELOOP_MYSQL_DSN": dsn, "CARELOOP_REDIS_ADDR": *redis, "CARELOOP_DATA_DIR": "/tmp/careloop-bbench",
		"CARELOOP_REDIS_PREFIX": fmt.Sprintf("bbench-%d:", time.Now().UnixNano())})
	defer a.Close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: *c}}

	day := time.Now().In(model.Shanghai).AddDate(0, 0, 3).Format(time.DateOnly)
	hot := model.Slot{Date: day, Start: "05:00", End: "05:30", Capacity: 1 << 30}
	benchenv.Must(a.DB.Gorm().Create(&hot).Error)
	var pkg model.Package
	benchenv.Must(a.DB.Gorm().Where("gender = ? AND min_age = 0", "any").Take(&pkg).Error)

	// Patients and their tokens.
	tokens := make([]string, *n)
	benchenv.Parallel(*n, *c, func(i int) {
		body, _ := json.Marshal(map[string]string{"code": fmt.Sprintf("dev:bb%d", i)})
		res, err := client.Post(base+"/api/mp/login", "application/json", bytes.NewReader(body))
		benchenv.Must(err)
		var out struct{ Token string }
		benchenv.Must(json.NewDecoder(res.Body).Decode(&out))
		res.Body.Close()
		tokens[i] = out.Token
	})

	// The ceiling: only the booking transaction, on the same database.
	ceilSlot := model.Slot{Date: day, Start: "05:30", End: "06:00", Capacity: 1 << 30}
	benchenv.Must(a.DB.Gorm().Create(&ceilSlot).Error)
	var patientIDs []uint64
	if err := a.DB.Gorm().Model(&model.Patient{}).Order("id").Pluck("id", &patientIDs).Error; err != nil {
		log.Fatal(err)
	}
	start := time.Now()
	var ceilLat []time.Duration
	var mu sync.Mutex
	benchenv.Parallel(*n, *c, func(i int) {
		t0 := time.Now()
		err := a.DB.Gorm().Transaction(func(tx *gorm.DB) error {
			res := tx.Model(&model.Slot{}).Where("id = ? AND booked < capacity", ceilSlot.ID).Update("booked", gorm.Expr("booked + 1"))
			if res.Error != nil || res.RowsAffected == 0 {
				return fmt.Errorf("full: %v", res.Error)
			}
			d := day
			return tx.Create(&model.Booking{Code: fmt.Sprintf("C%07d", i), PatientID: patientIDs[i], PersonKey: fmt.Sprintf("c:%d", i),
				ActiveDay: &d, PackageID: pkg.ID, SlotID: ceilSlot.ID, Date: day, Status: model.BookingBooked, IdempotencyKey: fmt.Sprintf("ceil-%d", i)}).Error
		})
		benchenv.Must(err)
		mu.Lock()
		ceilLat = append(ceilLat, time.Since(t0))
		mu.Unlock()
	})
	ceiling := float64(*n) / time.Since(start).Seconds()

	// Through HTTP: the whole product path.
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		benchenv.Must(err)
		benchenv.Must(pprof.StartCPUProfile(f))
	}
	lat, failed, took := benchenv.Requests(client, *n, *c, 201, func(i int) *http.Request {
		body, _ := json.Marshal(map[string]any{"package_id": pkg.ID, "slot_id": hot.ID})
		req, _ := http.NewRequest("POST", base+"/api/mp/bookings", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tokens[i])
		req.Header.Set("Idempotency-Key", fmt.Sprintf("bench-%d", i))
		req.Header.Set("Content-Type", "application/json")
		return req
	})
	httpRate := float64(*n) / took.Seconds()
	if *cpuprofile != "" {
		pprof.StopCPUProfile()
	}
	var booked model.Slot
	if err := a.DB.Gorm().Where("id = ?", hot.ID).Take(&booked).Error; err != nil {
		log.Fatal(err)
	}

	// Slot listing.
	if *listprofile != "" {
		f, err := os.Create(*listprofile)
		benchenv.Must(err)
		benchenv.Must(pprof.StartCPUProfile(f))
		defer pprof.StopCPUProfile()
	}
	var listed atomic.Int64
	deadline := time.Now().Add(*listFor)
	var wg sync.WaitGroup
	for g := 0; g < *c; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				req, _ := http.NewRequest("GET", fmt.Sprintf("%s/api/mp/packages/%d/slots", base, pkg.ID), nil)
				req.Header.Set("Authorization", "Bearer "+tokens[0])
				res, err := client.Do(req)
				benchenv.Must(err)
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				listed.Add(1)
			}
		}()
	}
	wg.Wait()

	fmt.Printf("hot slot, %d bookings by %d distinct patients, %d concurrent clients, MariaDB + Redis\n", *n, *n, *c)
	fmt.Printf("ceiling (bare Go loop: conditional update + insert transaction): %.0f bookings/s, p50 %s, p99 %s\n", ceiling, benchenv.Pct(ceilLat, 50), benchenv.Pct(ceilLat, 99))
	fmt.Printf("through HTTP (auth, rules, idempotency, rate limit, outbox): %.0f bookings/s, p50 %s, p99 %s, non-201: %d\n", httpRate, benchenv.Pct(lat, 50), benchenv.Pct(lat, 99), failed)
	fmt.Printf("ratio: %.2f; slot booked counter: %d\n", httpRate/ceiling, booked.Booked)
	fmt.Printf("slot listing: %.0f requests/s (%d clients)\n", float64(listed.Load())/listFor.Seconds(), *c)
}
