package app_test

import (
	"fmt"
	"math"
	"testing"
	"time"

	"careloop/app"
	"careloop/model"
)

// extremes are the numbers a hostile or broken client sends.
var extremes = []any{math.MaxInt64, math.MinInt64, int64(math.MinInt64 + 1), -1, 0, int64(1) << 53, 1e300, -1e300, 2147483648, -2147483649}

// The staff routes that take numbers, driven with extreme values in every
// numeric field of an otherwise valid body: never a 5xx, an out-of-range
// value is 422 naming its field, and nothing out of bounds is stored (the
// patient's points still read).
func TestExtremeNumbers(t *testing.T) {
	forEachBackend(t, nil, func(t *testing.T, a *app.App) {
		h := a.Router
		admin := staffLogin(t, h, app.DemoAdminUser, app.DemoAdminPassword)
		tok, pid := login(t, h, "dev:extreme")
		from := time.Now().In(model.Shanghai).AddDate(0, 0, 40).Format(time.DateOnly)
		type route struct {
			method, path string
			base         func() map[string]any
			numeric      []string // the fields to drive; "weekdays" drives a period's capacity
		}
		routes := []route{
			{"POST", "/api/admin/packages", func() map[string]any {
				return map[string]any{"name": "极值套餐", "price_fen": 1000, "min_age": 0, "max_age": 0, "sort_order": 0}
			}, []string{"price_fen", "min_age", "max_age", "sort_order"}},
			{"POST", "/api/admin/rewards", func() map[string]any {
				return map[string]any{"name": "极值礼品", "kind": "coupon", "cost_points": 10, "stock": 5, "coupon_value_fen": 100, "active": true}
			}, []string{"cost_points", "stock", "coupon_value_fen"}},
			{"POST", fmt.Sprintf("/api/admin/patients/%d/points/adjust", pid), func() map[string]any {
				return map[string]any{"amount": 10, "reason": "测试"}
			}, []string{"amount"}},
			{"POST", "/api/admin/schedules", func() map[string]any {
				return map[string]any{"from": from, "to": from, "weekdays": map[string]any{}}
			}, []string{"weekdays"}},
		}
		levelBase := func() map[string]any {
			return map[string]any{"name": "极值等级", "growth": 0, "discount_pct": 0, "free_consults_per_month": 0, "booking_window_days": 0}
		}
		tries := 0
		for _, rt := range routes {
			for _, field := range rt.numeric {
				for _, v := range extremes {
					body := rt.base()
					if field == "weekdays" {
						wd := fmt.Sprint(int(time.Now().In(model.Shanghai).AddDate(0, 0, 40).Weekday()))
						body["weekdays"] = map[string]any{wd: []map[string]any{{"start": "05:00", "end": "05:30", "capacity": v}}}
					} else {
						body[field] = v
					}
					r := call(t, h, rt.method, rt.path, admin, body)
					tries++
					if r.Status >= 500 {
						t.Errorf("%s %s %s=%v: %d %s", rt.method, rt.path, field, v, r.Status, r.Raw)
					}
					if r.Status == 422 && r.ErrCode() == "out_of_range" {
						if f := r.Body["error"].(map[string]any)["details"].(map[string]any)["field"]; f != field && field != "weekdays" {
							t.Errorf("%s %s=%v: the refusal names %v", rt.path, field, v, f)
						}
					}
				}
			}
		}
		for _, field := range []string{"growth", "discount_pct", "free_consults_per_month", "booking_window_days"} {
			for _, v := range extremes {
				l := levelBase()
				l[field] = v
				r := call(t, h, "PUT", "/api/admin/levels", admin, map[string]any{"items": []map[string]any{l}})
				tries++
				if r.Status >= 500 {
					t.Errorf("levels %s=%v: %d %s", field, v, r.Status, r.Raw)
				}
			}
		}
		// The hole the review found: the smallest int64 as an adjustment.
		if r := call(t, h, "POST", fmt.Sprintf("/api/admin/patients/%d/points/adjust", pid), admin, map[string]any{"amount": int64(math.MinInt64), "reason": "x"}); r.Status != 422 || r.ErrCode() != "out_of_range" {
			t.Fatalf("adjust by MinInt64: %d %s", r.Status, r.Raw)
		}
		// Many grants near the cap cannot push a balance past it.
		for i := 0; i < 3; i++ {
			call(t, h, "POST", fmt.Sprintf("/api/admin/patients/%d/points/adjust", pid), admin, map[string]any{"amount": model.BoundAdjust.Max, "reason": "上限"})
		}
		if r := call(t, h, "GET", "/api/mp/points", tok, nil); r.Status != 200 {
			t.Fatalf("the patient's points after extreme adjustments: %d %s", r.Status, r.Raw)
		}
		// Nothing out of bounds is stored.
		checks := []struct {
			table, column string
			b             model.Bound
		}{
			{"packages", "price_fen", model.BoundPriceFen}, {"packages", "min_age", model.BoundMinAge}, {"packages", "max_age", model.BoundMaxAge},
			{"packages", "sort_order", model.BoundSortOrder},
			{"rewards", "cost_points", model.BoundCostPoints}, {"rewards", "stock", model.BoundStock},
			{"slots", "capacity", model.BoundCapacity}, {"levels", "growth", model.BoundGrowth}, {"levels", "discount_pct", model.BoundDiscountPct},
			{"points_accounts", "balance", model.Bound{Field: "balance", Min: 0, Max: model.MaxPoints}},
			{"points_entries", "amount", model.Bound{Field: "amount", Min: -model.MaxPoints, Max: model.MaxPoints}},
		}
		for _, c := range checks {
			var n int64
			a.DB.Gorm().Table(c.table).Where(c.column+" < ? OR "+c.column+" > ?", c.b.Min, c.b.Max).Count(&n)
			if n > 0 {
				t.Errorf("%d rows of %s have %s out of [%d, %d]", n, c.table, c.column, c.b.Min, c.b.Max)
			}
		}
		if tries < 120 {
			t.Fatalf("only %d tries", tries)
		}
	})
}

// A page size outside 1–100 is refused with the field, on every list that
// takes one.
func TestPageSizeBounds(t *testing.T) {
	a := newApp(t, "sqlite", nil)
	admin := staffLogin(t, a.Router, app.DemoAdminUser, app.DemoAdminPassword)
	_, pid := login(t, a.Router, "dev:paged")
	for _, path := range []string{"/api/admin/patients", "/api/admin/audit", "/api/admin/notifications", "/api/admin/conversations",
		fmt.Sprintf("/api/admin/patients/%d/points/ledger", pid)} {
		for _, bad := range []string{"0", "101", "-5", "abc", "9223372036854775808"} {
			r := call(t, a.Router, "GET", path+"?limit="+bad, admin, nil)
			if r.Status != 422 || r.ErrCode() != "out_of_range" || r.Body["error"].(map[string]any)["details"].(map[string]any)["field"] != "limit" {
				t.Errorf("%s?limit=%s: %d %s", path, bad, r.Status, r.Raw)
			}
		}
		if r := call(t, a.Router, "GET", path+"?limit=50", admin, nil); r.Status != 200 {
			t.Errorf("%s?limit=50: %d %s", path, r.Status, r.Raw)
		}
	}
}
