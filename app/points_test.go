package app_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"careloop/app"
	"careloop/model"
	"careloop/service"
)

func redeemCall(t *testing.T, a *app.App, tok string, rewardID uint64, key string) response {
	req := httptest.NewRequest("POST", fmt.Sprintf("/api/mp/rewards/%d/redeem", rewardID), strings.NewReader("{}"))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Idempotency-Key", key)
	rec := httptest.NewRecorder()
	a.Router.ServeHTTP(rec, req)
	res := response{Status: rec.Code, Raw: rec.Body.Bytes()}
	_ = jsonUnmarshal(res.Raw, &res.Body)
	return res
}

func grantPoints(t *testing.T, a *app.App, pid uint64, n int64) {
	admin := service.Principal{Kind: model.SubjectStaff, ID: 1, Role: model.RoleAdmin}
	if err := a.Points.Adjust(context.Background(), admin, pid, n, "测试发放"); err != nil {
		t.Fatal(err)
	}
}

func balance(a *app.App, pid uint64) int64 {
	var acct model.PointsAccount
	a.DB.Gorm().Where("patient_id = ?", pid).Take(&acct)
	return acct.Balance
}

func TestRedeemRaces(t *testing.T) {
	forEachBackend(t, nil, func(t *testing.T, a *app.App) {
		ctx := context.Background()
		cheap, _ := a.Points.SaveReward(ctx, service.System, model.Reward{Name: "体检代金券 50 元", Kind: model.RewardCoupon, CostPoints: 100, Stock: 100, CouponValueFen: 5000, Active: true})
		scarce, _ := a.Points.SaveReward(ctx, service.System, model.Reward{Name: "定制保温杯", Kind: model.RewardItem, CostPoints: 100, Stock: 5, Active: true})

		// One patient with 300 points redeems 10 times at once: 3 succeed, never below zero.
		tok, pid := login(t, a.Router, "dev:saver")
		grantPoints(t, a, pid, 300)
		rs := race(10, func(i int) response { return redeemCall(t, a, tok, cheap.ID, fmt.Sprintf("k%d", i)) })
		c := countBy(rs)
		if c["200"] != 3 || c["409 insufficient_points"] != 7 || balance(a, pid) != 0 {
			t.Fatalf("one patient x10: %v balance=%d", c, balance(a, pid))
		}
		var coupons int64
		a.DB.Gorm().Model(&model.Coupon{}).Where("patient_id = ?", pid).Count(&coupons)
		var sum int64
		a.DB.Gorm().Model(&model.PointsEntry{}).Where("patient_id = ?", pid).Select("SUM(amount)").Scan(&sum)
		if coupons != 3 || sum != 0 {
			t.Fatalf("coupons=%d ledger sum=%d", coupons, sum)
		}
		// Twenty patients, five in stock: five get it, the others keep their points.
		toks := loginMany(t, a, "collector", 20)
		var pids []uint64
		for i := range toks {
			var p model.Patient
			a.DB.Gorm().Where("open_id = ?", fmt.Sprintf("collector%d", i)).Take(&p)
			grantPoints(t, a, p.ID, 100)
			pids = append(pids, p.ID)
		}
		rs = race(20, func(i int) response { return redeemCall(t, a, toks[i], scarce.ID, "cup") })
		c = countBy(rs)
		var r model.Reward
		a.DB.Gorm().Where("id = ?", scarce.ID).Take(&r)
		if c["200"] != 5 || c["409 out_of_stock"] != 15 || r.Stock != 0 {
			t.Fatalf("stock race: %v stock=%d", c, r.Stock)
		}
		var total int64
		for _, p := range pids {
			total += balance(a, p)
		}
		if total != 15*100 {
			t.Fatalf("points left with the 15 who got nothing: %d", total)
		}
		// The same key again changes nothing.
		k := 0
		for balance(a, pids[k]) != 100 {
			k++
		}
		redeemCall(t, a, toks[k], cheap.ID, "again")
		if r := redeemCall(t, a, toks[k], cheap.ID, "again"); r.Status != 200 || balance(a, pids[k]) != 0 {
			t.Fatalf("a replayed key: %d, balance %d", r.Status, balance(a, pids[k]))
		}
	})
}

func TestEarningLevelsCouponsAndExpiry(t *testing.T) {
	forEachBackend(t, nil, func(t *testing.T, a *app.App) {
		ctx := context.Background()
		h := a.Router
		admin := staffLogin(t, h, app.DemoAdminUser, app.DemoAdminPassword)
		levels := map[string]any{"items": []map[string]any{
			{"name": "普通会员", "growth": 0}, {"name": "VIP", "growth": 300, "discount_pct": 10, "free_consults_per_month": 2},
		}}
		if r := call(t, h, "PUT", "/api/admin/levels", admin, levels); r.Status != 200 {
			t.Fatalf("levels: %d %s", r.Status, r.Raw)
		}
		tok, pid := login(t, h, "dev:member")
		pkg := anyPackage(t, a)
		// A completed checkup earns from the price paid, once even if completion comes twice.
		early := service.NewBookings(a.DB, a.Outbox, a.Store, a.Store, a.CareRules, a.Points, a.Events, service.BookingConfig{}, func() time.Time { return time.Now().AddDate(0, 0, -2) })
		today := time.Now().In(model.Shanghai)
		sl := model.Slot{Date: today.Format(time.DateOnly), Start: "06:10", End: "06:40", Capacity: 5}
		a.DB.Gorm().Create(&sl)
		b, _, err := early.Book(ctx, service.Principal{Kind: model.SubjectPatient, ID: pid}, service.BookInput{PackageID: pkg.ID, SlotID: sl.ID, IdempotencyKey: "m1"})
		if err != nil {
			t.Fatal(err)
		}
		desk := newStaff(t, a, admin, "desk", "frontdesk")
		call(t, h, "POST", fmt.Sprintf("/api/admin/bookings/%d/check-in", b.ID), desk, nil)
		call(t, h, "POST", fmt.Sprintf("/api/admin/bookings/%d/complete", b.ID), desk, nil)
		// The PEIS report for the same booking completes it "again".
		ingest(t, h, "peis", peisSecret, time.Now(), reportBody("R-M1", b.Code, "", "5.0", false, false))
		sum := call(t, h, "GET", "/api/mp/points", tok, nil)
		want := pkg.PriceFen / 100
		if sum.Body["balance"].(float64) != float64(want) || sum.Body["growth"].(float64) != float64(want) {
			t.Fatalf("earned once from %d fen: %s", pkg.PriceFen, sum.Raw)
		}
		if sum.Body["level"].(map[string]any)["name"] != "VIP" { // 399 growth >= 300
			t.Fatalf("level: %s", sum.Raw)
		}
		// VIP pays 10% less; a coupon takes its value off; cancelling gives the coupon back.
		cp, _ := a.Points.SaveReward(ctx, service.System, model.Reward{Name: "50 元券", Kind: model.RewardCoupon, CostPoints: 100, Stock: 10, CouponValueFen: 5000, Active: true})
		red := redeemCall(t, a, tok, cp.ID, "c1")
		couponID := uint64(red.Body["coupon"].(map[string]any)["id"].(float64))
		sl2 := testSlot(t, a, "06:20", 5)
		r := bookCall(t, h, tok, "m2", map[string]any{"package_id": pkg.ID, "slot_id": sl2.ID, "coupon_id": couponID})
		if wantPrice := pkg.PriceFen*90/100 - 5000; r.Status != 201 || int64(r.Body["price_fen"].(float64)) != wantPrice {
			t.Fatalf("discounted price with coupon: %d %s (want %d)", r.Status, r.Raw, wantPrice)
		}
		sl3 := testSlot(t, a, "06:30", 5)
		if r := bookCall(t, h, tok, "m3", map[string]any{"package_id": pkg.ID, "slot_id": sl3.ID, "coupon_id": couponID}); r.Status != 422 || r.ErrCode() != "coupon_unusable" {
			t.Fatalf("a used coupon: %d %s", r.Status, r.Raw)
		}
		call(t, h, "POST", fmt.Sprintf("/api/mp/bookings/%v/cancel", r.Body["id"]), tok, nil)
		call(t, h, "POST", fmt.Sprintf("/api/mp/bookings/%v/cancel", uint64(bookCall(t, h, tok, "m2", map[string]any{"package_id": pkg.ID, "slot_id": sl2.ID, "coupon_id": couponID}).Body["id"].(float64))), tok, nil)
		var c model.Coupon
		a.DB.Gorm().Where("id = ?", couponID).Take(&c)
		if c.Status != model.CouponUnused || c.BookingID != nil {
			t.Fatalf("coupon after cancel: %+v", c)
		}
		// Expiry takes what is left of the oldest grant first.
		bal := balance(a, pid)
		a.DB.Gorm().Model(&model.PointsEntry{}).Where("patient_id = ? AND kind = ?", pid, model.PointsEarn).
			Update("expires_at", time.Now().Add(-time.Hour))
		if err := a.Points.Expire(ctx, time.Now()); err != nil {
			t.Fatal(err)
		}
		var earn model.PointsEntry
		a.DB.Gorm().Where("patient_id = ? AND kind = ?", pid, model.PointsEarn).Take(&earn)
		if left := balance(a, pid); left != bal-(earn.Amount-100) || earn.Remaining != 0 {
			t.Fatalf("expiry: balance %d -> %d, earn %+v", bal, left, earn)
		}
		if err := a.Points.Expire(ctx, time.Now()); err != nil || balance(a, pid) != bal-(earn.Amount-100) {
			t.Fatal("expiring twice took points twice")
		}
		// Staff adjustments need a reason and are audited.
		mkt := newStaff(t, a, admin, "mkt", "marketing")
		if r := call(t, h, "POST", fmt.Sprintf("/api/admin/patients/%d/points/adjust", pid), mkt, map[string]any{"amount": 20}); r.Status != 422 {
			t.Fatalf("adjust without reason: %d", r.Status)
		}
		if r := call(t, h, "POST", fmt.Sprintf("/api/admin/patients/%d/points/adjust", pid), mkt, map[string]any{"amount": -100000, "reason": "纠错"}); r.Status != 409 {
			t.Fatalf("adjust below zero: %d", r.Status)
		}
		if r := call(t, h, "POST", fmt.Sprintf("/api/admin/patients/%d/points/adjust", pid), mkt, map[string]any{"amount": 20, "reason": "补发活动积分"}); r.Status != 200 || r.Body["balance"] == nil {
			t.Fatalf("adjust: %d %s", r.Status, r.Raw)
		}
		if au := call(t, h, "GET", fmt.Sprintf("/api/admin/audit?patient_id=%d&action=points.adjust", pid), admin, nil); len(au.Body["items"].([]any)) != 1 {
			t.Fatalf("adjustment not audited: %s", au.Raw)
		}
	})
}

// A month before points expire, the patient is told, once.
func TestPointsExpiryReminder(t *testing.T) {
	forEachBackend(t, func(c *app.Config) { c.PointsPerYuan = 2 }, func(t *testing.T, a *app.App) {
		ctx := context.Background()
		_, pid := login(t, a.Router, "dev:saver2")
		grantPoints(t, a, pid, 120)
		soon := time.Now().AddDate(0, 0, 20)
		a.DB.Gorm().Model(&model.PointsEntry{}).Where("patient_id = ?", pid).Update("expires_at", soon)
		for i := 0; i < 2; i++ {
			if err := a.Points.ExpiryReminders(ctx, time.Now()); err != nil {
				t.Fatal(err)
			}
		}
		var ns []model.Notification
		a.DB.Gorm().Where("patient_id = ? AND reason = ?", pid, "points_expiry").Find(&ns)
		if len(ns) != 1 || !strings.Contains(ns[0].Params, "120") {
			t.Fatalf("expiry reminders: %+v", ns)
		}
		// The configured rate applies to checkups: 2 points per yuan.
		b := model.Booking{ID: 999999, PatientID: pid, PriceFen: 10000}
		if err := a.Points.EarnForBooking(ctx, &b); err != nil || balance(a, pid) != 120+200 {
			t.Fatalf("rate: balance %d, %v", balance(a, pid), err)
		}
	})
}

// One coupon, many bookings at once: it pays for one of them only, and
// another patient cannot use it at all.
func TestCouponUsedOnceUnderRace(t *testing.T) {
	forEachBackend(t, nil, func(t *testing.T, a *app.App) {
		ctx := context.Background()
		tok, pid := login(t, a.Router, "dev:couponer")
		grantPoints(t, a, pid, 100)
		cp, _ := a.Points.SaveReward(ctx, service.System, model.Reward{Name: "30 元券", Kind: model.RewardCoupon, CostPoints: 100, Stock: 5, CouponValueFen: 3000, Active: true})
		couponID := uint64(redeemCall(t, a, tok, cp.ID, "one").Body["coupon"].(map[string]any)["id"].(float64))
		pkg := anyPackage(t, a)
		thief, _ := login(t, a.Router, "dev:thief")
		if r := bookCall(t, a.Router, thief, "x", map[string]any{"package_id": pkg.ID, "slot_id": testSlot(t, a, "04:00", 5).ID, "coupon_id": couponID}); r.Status != 422 || r.ErrCode() != "coupon_unusable" {
			t.Fatalf("another patient's coupon: %d %s", r.Status, r.Raw)
		}
		// Eight bookings on eight different days (one booking a day per person), all with the coupon.
		var slots []model.Slot
		for i := 0; i < 8; i++ {
			sl := model.Slot{Date: time.Now().In(model.Shanghai).AddDate(0, 0, 3+i).Format(time.DateOnly), Start: "04:30", End: "04:59", Capacity: 5}
			a.DB.Gorm().Create(&sl)
			slots = append(slots, sl)
		}
		rs := race(8, func(i int) response {
			return bookCall(t, a.Router, tok, fmt.Sprintf("c%d", i), map[string]any{"package_id": pkg.ID, "slot_id": slots[i].ID, "coupon_id": couponID})
		})
		discounted := 0
		for _, r := range rs {
			switch {
			case r.Status == 201 && int64(r.Body["price_fen"].(float64)) == pkg.PriceFen-3000:
				discounted++
			case r.Status == 422 && r.ErrCode() == "coupon_unusable":
			default:
				t.Fatalf("unexpected answer: %d %s", r.Status, r.Raw)
			}
		}
		var c model.Coupon
		a.DB.Gorm().Where("id = ?", couponID).Take(&c)
		var booked int64
		a.DB.Gorm().Model(&model.Booking{}).Where("patient_id = ?", pid).Count(&booked)
		if discounted != 1 || c.Status != model.CouponUsed || c.BookingID == nil || booked != 1 {
			t.Fatalf("discounted=%d coupon=%+v bookings=%d", discounted, c, booked)
		}
	})
}

// A redemption answers the state after it (the stock after the
// deduction), and a replay of its key answers exactly the same.
func TestRedeemAnswersTheStateAfter(t *testing.T) {
	forEachBackend(t, nil, func(t *testing.T, a *app.App) {
		ctx := context.Background()
		rw, _ := a.Points.SaveReward(ctx, service.System, model.Reward{Name: "体检代金券 50 元", Kind: model.RewardCoupon, CostPoints: 100, Stock: 7, CouponValueFen: 5000, Active: true})
		tok, pid := login(t, a.Router, "dev:redeemer")
		grantPoints(t, a, pid, 250)
		first := redeemCall(t, a, tok, rw.ID, "once")
		reward := first.Body["reward"].(map[string]any)
		if first.Status != 200 || reward["stock"] != float64(6) || first.Body["balance"] != float64(150) || first.Body["coupon"] == nil {
			t.Fatalf("redeem: %d %s", first.Status, first.Raw)
		}
		time.Sleep(600 * time.Millisecond) // a stored time rounded to the second would now differ
		again := redeemCall(t, a, tok, rw.ID, "once")
		if again.Status != 200 || string(again.Raw) != string(first.Raw) {
			t.Fatalf("replay answers differently:\n%s\n%s", first.Raw, again.Raw)
		}
		if balance(a, pid) != 150 {
			t.Fatalf("the replay spent again: %d", balance(a, pid))
		}
	})
}
