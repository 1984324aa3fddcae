// Command reports measures report ingestion through HTTP (signed requests,
// the fully wired careloop on MariaDB): N reports of 30 items each from c
// concurrent senders, half of them matched to patients by phone.
//
//	go run ./bench/reports -n 10000
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net/http"
	"time"

	_ "github.com/go-sql-driver/mysql"

	"careloop/bench/benchenv"
	"careloop/model"
	"careloop/service"
)

func main() {
	n := flag.Int("n", 10000, "reports")
	c := flag.Int("c", 16, "concurrent senders")
	items := flag.Int("items", 30, "items per report")
	server := flag.String("mysql", "root@tcp(127.0.0.1:3306)/", "MySQL server DSN")
	flag.Parse()
	dsn, drop := benchenv.Database(*server, "rbench")
	defer drop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, base := benchenv.Serve(ctx, map[string]string{"CARELOOP_MYSQL_DSN": dsn, "CARELOOP_DATA_DIR": "/tmp/careloop-rbench"})
	defer a.Close()

	// 1,000 patients with phones, so half the reports match.
	for i := 0; i < 1000; i++ {
		h := a.Sealer.Hash(fmt.Sprintf("139%08d", i))
		benchenv.Must(a.DB.Gorm().Create(&model.Patient{Name: fmt.Sprint("p", i), Gender: "unknown", PhoneHash: &h, PhoneEnc: a.Sealer.Seal([]byte("x"))}).Error)
	}
	bodies := make([][]byte, *n)
	for i := range bodies {
		var its []map[string]any
		for j := 0; j < *items; j++ {
			ab := ""
			if j%7 == 0 {
				ab = "high"
			}
			its = append(its, map[string]any{"code": fmt.Sprintf("I%02d", j), "name": fmt.Sprintf("项目%d", j), "value": fmt.Sprint(j*3 + i%10),
				"unit": "mmol/L", "reference_range": "1-10", "abnormal": ab})
		}
		phone := fmt.Sprintf("139%08d", i%2000) // half of them exist
		bodies[i], _ = json.Marshal(map[string]any{"external_id": fmt.Sprintf("R%06d", i), "phone": phone, "exam_date": "2026-11-20",
			"doctor": "张医生", "sections": []map[string]any{{"name": "生化", "items": its}}, "conclusions": []string{"见各项"}})
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: *c}}
	lat, failed, el := benchenv.Requests(client, *n, *c, 201, func(i int) *http.Request {
		req, _ := http.NewRequest("POST", base+"/api/integrations/reports", bytes.NewReader(bodies[i]))
		req.Header.Set("X-Careloop-Source", "peis")
		req.Header.Set("X-Careloop-Signature", service.Sign("sandbox-peis-secret", time.Now(), bodies[i]))
		return req
	})
	var matched int64
	if err := a.DB.Gorm().Model(&model.Report{}).Where("patient_id IS NOT NULL").Count(&matched).Error; err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%d reports x %d items, %d senders, MariaDB: %.0f reports/s (%.1fs), p50 %s, p99 %s, non-201: %d, matched: %d\n",
		*n, *items, *c, float64(*n)/el.Seconds(), el.Seconds(), benchenv.Pct(lat, 50), benchenv.Pct(lat, 99), failed, matched)
}
