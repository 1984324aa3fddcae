package app_test

import (
	"context"
	"fmt"
	"math/rand"
	"testing"
	"time"

	"careloop/app"
	"careloop/model"
	"careloop/testenv"
)

// completedCheckup records a checkup completed daysAgo, paid priceFen
// (less couponFen, a coupon used on it).
func completedCheckup(t *testing.T, a *app.App, patientID uint64, daysAgo int, priceFen, couponFen int64) {
	t.Helper()
	at := time.Now().Add(-time.Duration(daysAgo) * 24 * time.Hour)
	b := model.Booking{Code: fmt.Sprintf("R%010d", rand.Int63n(1e10)), PatientID: patientID, PersonKey: fmt.Sprintf("p:%d", patientID),
		PackageID: 1, SlotID: 1, Date: at.Format(time.DateOnly), Status: model.BookingCompleted, PriceFen: priceFen,
		IdempotencyKey: fmt.Sprintf("rfm-%d", rand.Int63()), CompletedAt: &at, CreatedAt: at}
	if err := a.DB.Gorm().Create(&b).Error; err != nil {
		t.Fatal(err)
	}
	if couponFen > 0 {
		if err := a.DB.Gorm().Create(&model.Coupon{PatientID: patientID, Code: fmt.Sprintf("C%012d", rand.Int63n(1e12)), ValueFen: couponFen,
			Status: model.CouponUsed, BookingID: &b.ID, ExpiresAt: at.AddDate(1, 0, 0)}).Error; err != nil {
			t.Fatal(err)
		}
	}
}

func newPatient(t *testing.T, a *app.App, name string) uint64 {
	t.Helper()
	p := model.Patient{Name: name, Source: "test"}
	if err := a.DB.Gorm().Create(&p).Error; err != nil {
		t.Fatal(err)
	}
	return p.ID
}

func runRFM(t *testing.T, a *app.App, tok string) response {
	t.Helper()
	r := call(t, a.Router, "POST", "/api/admin/rfm/runs", tok, nil)
	if r.Status != 202 || r.Body["status"] != "queued" {
		t.Fatalf("start: %d %s", r.Status, r.Raw)
	}
	if again := call(t, a.Router, "POST", "/api/admin/rfm/runs", tok, nil); again.Status != 409 || again.ErrCode() != "rfm_running" {
		t.Fatalf("a second run while one is queued: %d %s", again.Status, again.Raw)
	}
	if did, err := a.RFM.RunOnce(context.Background()); err != nil || !did {
		t.Fatalf("run: %v %v", did, err)
	}
	return call(t, a.Router, "GET", fmt.Sprintf("/api/admin/rfm/runs/%v", r.Body["id"]), tok, nil)
}

// A small population is scored by the fixed thresholds into the four
// tiers (coupons lower what was paid; checkups older than 24 months do not
// count); a second run shows who moved, and the 360 the patient's tier and
// its history.
func TestRFMTiersAndMigration(t *testing.T) {
	for _, backend := range testenv.Backends() {
		t.Run(backend, func(t *testing.T) {
			a := newIdleApp(t, backend, nil)
			h := a.Router
			admin := staffLogin(t, h, app.DemoAdminUser, app.DemoAdminPassword)
			mkt := newStaffOnce(t, a, admin, "mkt", "marketing")
			desk := newStaffOnce(t, a, admin, "desk", "frontdesk")
			if r := call(t, h, "POST", "/api/admin/rfm/runs", desk, nil); r.Status != 403 {
				t.Fatalf("the front desk scores patients: %d", r.Status)
			}
			plat, gold, iron, lead, coupon, old := newPatient(t, a, "白金"), newPatient(t, a, "黄金"), newPatient(t, a, "铁"), newPatient(t, a, "铅"),
				newPatient(t, a, "券"), newPatient(t, a, "久远")
			for i := 0; i < 5; i++ {
				completedCheckup(t, a, plat, 30+i*100, 120000, 0) // 5 in 2 years, 6,000 元, last 30 days ago
			}
			for i := 0; i < 3; i++ {
				completedCheckup(t, a, gold, 100+i*200, 70000, 0) // R 100 days, F 3, M 2,100 元
			}
			completedCheckup(t, a, iron, 300, 45000, 0)
			completedCheckup(t, a, iron, 500, 45000, 0) // R 300, F 2, M 900 元
			completedCheckup(t, a, lead, 600, 50000, 0) // R 600, F 1, M 500 元
			completedCheckup(t, a, coupon, 500, 100000, 30000)
			completedCheckup(t, a, old, 800, 900000, 0) // outside the window

			run := runRFM(t, a, mkt)
			tiers := run.Body["tiers"].(map[string]any)
			if run.Body["status"] != "done" || run.Body["patients"] != 5.0 || tiers["platinum"] != 1.0 || tiers["gold"] != 1.0 || tiers["iron"] != 1.0 || tiers["lead"] != 2.0 {
				t.Fatalf("run: %s", run.Raw)
			}
			if m := run.Body["thresholds"].(map[string]any)["method"].(map[string]any); m["r"] != "fixed" || m["m"] != "fixed" {
				t.Fatalf("a population of 5 used quintiles: %v", m)
			}
			var cs model.RFMScore
			a.DB.Gorm().Where("patient_id = ?", coupon).Take(&cs)
			if cs.M != 70000 || cs.Tier != model.TierLead {
				t.Fatalf("coupon patient: %+v", cs)
			}
			v := call(t, h, "GET", fmt.Sprintf("/api/admin/patients/%d", plat), mkt, nil)
			rfm, _ := v.Body["rfm"].(map[string]any)
			if rfm == nil || rfm["tier"] != "platinum" || rfm["tier_name"] != "白金" || rfm["r_score"] != 5.0 || rfm["f"] != 5.0 {
				t.Fatalf("360: %v", v.Body["rfm"])
			}
			if v := call(t, h, "GET", fmt.Sprintf("/api/admin/patients/%d", old), mkt, nil); v.Body["rfm"] != nil {
				t.Fatalf("a patient outside the window has a tier: %v", v.Body["rfm"])
			}

			// The lead patient comes back for a large checkup; someone new comes.
			completedCheckup(t, a, lead, 1, 600000, 0)
			fresh := newPatient(t, a, "新客")
			completedCheckup(t, a, fresh, 10, 40000, 0)
			second := runRFM(t, a, mkt)
			mig := second.Body["migration"].(map[string]any)
			if second.Body["prev_run_id"] != run.Body["id"] || mig["lead"].(map[string]any)["gold"] != 1.0 || mig["none"].(map[string]any)["iron"] != 1.0 ||
				mig["platinum"].(map[string]any)["platinum"] != 1.0 {
				t.Fatalf("migration: %s", second.Raw)
			}
			v = call(t, h, "GET", fmt.Sprintf("/api/admin/patients/%d", lead), mkt, nil)
			hist := v.Body["rfm"].(map[string]any)["history"].([]any)
			if len(hist) != 2 || hist[0].(map[string]any)["tier"] != "gold" || hist[1].(map[string]any)["tier"] != "lead" {
				t.Fatalf("tier history: %v", hist)
			}
			if l := call(t, h, "GET", "/api/admin/rfm/runs", mkt, nil); len(l.Body["items"].([]any)) != 2 {
				t.Fatalf("runs: %s", l.Raw)
			}
		})
	}
}

// A population large enough is scored by its own quintiles: about a fifth
// of the patients get each recency score.
func TestRFMQuintiles(t *testing.T) {
	a := newIdleApp(t, "sqlite", nil)
	admin := staffLogin(t, a.Router, app.DemoAdminUser, app.DemoAdminPassword)
	rng := rand.New(rand.NewSource(7))
	for i := 0; i < 250; i++ {
		pid := newPatient(t, a, fmt.Sprintf("q%d", i))
		completedCheckup(t, a, pid, 1+i*2, int64(20000+rng.Intn(500000)), 0)
	}
	run := runRFM(t, a, admin)
	th := run.Body["thresholds"].(map[string]any)
	if m := th["method"].(map[string]any); m["r"] != "quintile" || m["m"] != "quintile" {
		t.Fatalf("method: %v", m)
	}
	var counts []struct {
		RScore int
		N      int
	}
	a.DB.Gorm().Model(&model.RFMScore{}).Select("r_score, COUNT(*) AS n").Group("r_score").Scan(&counts)
	for _, c := range counts {
		if c.N < 45 || c.N > 55 {
			t.Errorf("recency score %d: %d of 250", c.RScore, c.N)
		}
	}
	if len(counts) != 5 {
		t.Fatalf("recency scores: %+v", counts)
	}
}

// The fixed thresholds and tier cut-offs are settings: a bad one is refused
// in Chinese, a good one takes effect at the next run.
func TestRFMConfig(t *testing.T) {
	a := newIdleApp(t, "sqlite", nil)
	h := a.Router
	admin := staffLogin(t, h, app.DemoAdminUser, app.DemoAdminPassword)
	cfg := call(t, h, "GET", "/api/admin/rfm/config", admin, nil)
	if cfg.Status != 200 || cfg.Body["platinum"] != 13.0 || cfg.Body["window_months"] != 24.0 {
		t.Fatalf("default: %d %s", cfg.Status, cfg.Raw)
	}
	bad := cfg.Body
	bad["gold"] = 14.0
	if r := call(t, h, "PUT", "/api/admin/rfm/config", admin, bad); r.Status != 400 || r.ErrCode() != "invalid_rfm_config" {
		t.Fatalf("gold above platinum: %d %s", r.Status, r.Raw)
	}
	pid := newPatient(t, a, "一次")
	completedCheckup(t, a, pid, 30, 50000, 0) // R5 F1 M1 = 7: iron by default
	good := call(t, h, "GET", "/api/admin/rfm/config", admin, nil).Body
	good["iron"], good["gold"] = 5.0, 7.0 // 7 is gold now
	if r := call(t, h, "PUT", "/api/admin/rfm/config", admin, good); r.Status != 200 || r.Body["gold"] != 7.0 {
		t.Fatalf("set: %d %s", r.Status, r.Raw)
	}
	run := runRFM(t, a, admin)
	if run.Body["tiers"].(map[string]any)["gold"] != 1.0 {
		t.Fatalf("the new cut-offs were not used: %s", run.Raw)
	}
}
