package app_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"careloop/app"
	"careloop/model"
	"careloop/notify"
	"careloop/service"
	"careloop/testenv"
)

func bookCall(t *testing.T, h http.Handler, token, key string, body any) response {
	t.Helper()
	rd := strings.NewReader(fmt.Sprint(jsonOf(body)))
	req := httptest.NewRequest("POST", "/api/mp/bookings", rd)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	res := response{Status: rec.Code, Raw: rec.Body.Bytes(), Header: rec.Header()}
	_ = jsonUnmarshal(res.Raw, &res.Body)
	return res
}

// testSlot makes a slot three days ahead (bookable) with the given capacity.
func testSlot(t *testing.T, a *app.App, start string, capacity int) model.Slot {
	t.Helper()
	day := time.Now().In(model.Shanghai).AddDate(0, 0, 3).Format(time.DateOnly)
	sl := model.Slot{Date: day, Start: start, End: start[:3] + "59", Capacity: capacity}
	if err := a.DB.Gorm().Create(&sl).Error; err != nil {
		t.Fatal(err)
	}
	return sl
}

func anyPackage(t *testing.T, a *app.App) model.Package {
	var p model.Package
	if err := a.DB.Gorm().Where("gender = ? AND min_age = 0", "any").Take(&p).Error; err != nil {
		t.Fatal(err)
	}
	return p
}

func TestBookingFlow(t *testing.T) {
	forEachBackend(t, nil, func(t *testing.T, a *app.App) {
		h := a.Router
		tok, pid := login(t, h, "dev:alice")
		pk := call(t, h, "GET", "/api/mp/packages", tok, nil)
		if pk.Status != 200 || len(pk.Body["items"].([]any)) != 4 {
			t.Fatalf("packages: %d %s", pk.Status, pk.Raw)
		}
		pkg := anyPackage(t, a)
		sl := call(t, h, "GET", fmt.Sprintf("/api/mp/packages/%d/slots", pkg.ID), tok, nil)
		slots := sl.Body["items"].([]any)
		if sl.Status != 200 || len(slots) == 0 {
			t.Fatalf("the sandbox seeds bookable slots: %s", sl.Raw)
		}
		first := slots[0].(map[string]any)
		slotID := uint64(first["id"].(float64))
		before := first["remaining"].(float64)

		body := map[string]any{"package_id": pkg.ID, "slot_id": slotID}
		if r := bookCall(t, h, tok, "", body); r.Status != 400 || r.ErrCode() != "idempotency_key_required" {
			t.Fatalf("no key: %d %s", r.Status, r.Raw)
		}
		r := bookCall(t, h, tok, "k1", body)
		if r.Status != 201 || r.Body["status"] != "booked" || len(r.Body["code"].(string)) != 8 {
			t.Fatalf("book: %d %s", r.Status, r.Raw)
		}
		bid := uint64(r.Body["id"].(float64))
		again := bookCall(t, h, tok, "k1", body)
		if again.Status != 201 || uint64(again.Body["id"].(float64)) != bid || again.Header.Get("Idempotent-Replayed") != "true" {
			t.Fatalf("replay: %d %s", again.Status, again.Raw)
		}
		var s model.Slot
		a.DB.Gorm().Where("id = ?", slotID).Take(&s)
		if float64(s.Remaining()) != before-1 {
			t.Fatalf("a replay took a second seat: remaining %d, was %v", s.Remaining(), before)
		}
		if r := bookCall(t, h, tok, "k1", map[string]any{"package_id": pkg.ID, "slot_id": uint64(slots[1].(map[string]any)["id"].(float64))}); r.Status != 422 || r.ErrCode() != "idempotency_key_reused" {
			t.Fatalf("key reused for another slot: %d %s", r.Status, r.Raw)
		}
		// One active booking per person per day.
		sameDay := uint64(slots[1].(map[string]any)["id"].(float64))
		if r := bookCall(t, h, tok, "k2", map[string]any{"package_id": pkg.ID, "slot_id": sameDay}); r.Status != 409 || r.ErrCode() != "duplicate_booking" {
			t.Fatalf("same day: %d %s", r.Status, r.Raw)
		}
		// The outbox has the confirmation and the reminder due at 18:00 the day before.
		var notes []model.Notification
		a.DB.Gorm().Where("patient_id = ?", pid).Order("id").Find(&notes)
		if len(notes) != 2 || notes[0].Reason != notify.ReasonBookingConfirmed || notes[1].Reason != notify.ReasonCheckupReminder {
			t.Fatalf("outbox: %+v", notes)
		}
		day, _ := time.ParseInLocation(time.DateOnly, s.Date, model.Shanghai)
		if want := day.AddDate(0, 0, -1).Add(18 * time.Hour); !notes[1].DueAt.Equal(want.UTC()) && want.After(time.Now()) {
			t.Fatalf("reminder due %s, want %s", notes[1].DueAt, want)
		}
		// Gender and profile rules.
		var female model.Package
		a.DB.Gorm().Where("gender = ?", "female").Take(&female)
		var fslot model.Slot
		a.DB.Gorm().Where("slot_group = ? AND date > ?", "", s.Date).Order("date").Take(&fslot)
		if r := bookCall(t, h, tok, "k3", map[string]any{"package_id": female.ID, "slot_id": fslot.ID}); r.Status != 422 || r.ErrCode() != "profile_incomplete" {
			t.Fatalf("female package, unknown gender: %d %s", r.Status, r.Raw)
		}
		call(t, h, "PUT", "/api/mp/me", tok, map[string]any{"gender": "male", "birth_date": "1980-01-01"})
		if r := bookCall(t, h, tok, "k4", map[string]any{"package_id": female.ID, "slot_id": fslot.ID}); r.Status != 422 || r.ErrCode() != "gender_restricted" {
			t.Fatalf("female package, male patient: %d %s", r.Status, r.Raw)
		}
		// A relative may be booked the same day.
		fm := call(t, h, "POST", "/api/mp/family", tok, map[string]any{"name": "李妈妈", "relation": "parent", "gender": "female", "birth_date": "1955-05-05"})
		fmID := uint64(fm.Body["id"].(float64))
		if r := bookCall(t, h, tok, "k5", map[string]any{"package_id": female.ID, "slot_id": sameDay, "family_member_id": fmID}); r.Status != 201 {
			t.Fatalf("relative same day: %d %s", r.Status, r.Raw)
		}
		// Another patient sees none of it.
		bob, _ := login(t, h, "dev:bob")
		if r := call(t, h, "GET", fmt.Sprintf("/api/mp/bookings/%d", bid), bob, nil); r.Status != 404 {
			t.Fatalf("another's booking: %d", r.Status)
		}
		if r := call(t, h, "POST", fmt.Sprintf("/api/mp/bookings/%d/cancel", bid), bob, nil); r.Status != 404 {
			t.Fatalf("cancel another's booking: %d", r.Status)
		}
		// Reschedule, then cancel: the seats come back.
		var other model.Slot
		a.DB.Gorm().Where("slot_group = ? AND date = ? AND id <> ? AND id <> ?", "", fslot.Date, fslot.ID, slotID).Take(&other)
		r = call(t, h, "POST", fmt.Sprintf("/api/mp/bookings/%d/reschedule", bid), tok, map[string]any{"slot_id": other.ID})
		if r.Status != 200 || uint64(r.Body["slot_id"].(float64)) != other.ID {
			t.Fatalf("reschedule: %d %s", r.Status, r.Raw)
		}
		a.DB.Gorm().Where("id = ?", slotID).Take(&s)
		if float64(s.Remaining()) != before {
			t.Fatalf("old seat not returned: %d", s.Remaining())
		}
		r = call(t, h, "POST", fmt.Sprintf("/api/mp/bookings/%d/cancel", bid), tok, nil)
		if r.Status != 200 || r.Body["status"] != "cancelled" {
			t.Fatalf("cancel: %d %s", r.Status, r.Raw)
		}
		var o model.Slot
		a.DB.Gorm().Where("id = ?", other.ID).Take(&o)
		if o.Booked != 0 {
			t.Fatalf("cancel did not give the seat back: %d", o.Booked)
		}
		var reminders int64
		a.DB.Gorm().Model(&model.Notification{}).Where("patient_id = ? AND reason = ? AND status = ?", pid, notify.ReasonCheckupReminder, model.NotifyPending).Count(&reminders)
		if reminders != 1 { // only the relative's booking still has a live reminder
			t.Fatalf("live reminders after cancel and move: %d", reminders)
		}
		if r := call(t, h, "POST", fmt.Sprintf("/api/mp/bookings/%d/cancel", bid), tok, nil); r.Status != 422 {
			t.Fatalf("cancel twice: %d", r.Status)
		}
	})
}

func TestFrontDeskAndRules(t *testing.T) {
	forEachBackend(t, nil, func(t *testing.T, a *app.App) {
		h := a.Router
		ctx := context.Background()
		admin := staffLogin(t, h, app.DemoAdminUser, app.DemoAdminPassword)
		desk := newStaff(t, a, admin, "desk", "frontdesk")
		_, pid := login(t, h, "dev:carol")
		pkg := anyPackage(t, a)
		today := time.Now().In(model.Shanghai)
		mk := func(day time.Time, start string) uint64 {
			sl := model.Slot{Date: day.Format(time.DateOnly), Start: start, End: start[:3] + "30", Capacity: 5}
			a.DB.Gorm().Create(&sl)
			// Booked two days earlier, as the patient would have.
			early := service.NewBookings(a.DB, a.Outbox, a.Store, a.Store, a.CareRules, a.Points, a.Events, service.BookingConfig{}, func() time.Time { return day.AddDate(0, 0, -2) })
			b, _, err := early.Book(ctx, service.Principal{Kind: model.SubjectPatient, ID: pid}, service.BookInput{PackageID: pkg.ID, SlotID: sl.ID, IdempotencyKey: "fd-" + day.Format(time.DateOnly) + start})
			if err != nil {
				t.Fatal(err)
			}
			return b.ID
		}
		todays := mk(today, "07:00")
		yesterdays := mk(today.AddDate(0, 0, -1), "07:00")
		list := call(t, h, "GET", "/api/admin/bookings?date="+today.Format(time.DateOnly), desk, nil)
		if len(list.Body["items"].([]any)) != 1 {
			t.Fatalf("today's bookings: %s", list.Raw)
		}
		code := list.Body["items"].([]any)[0].(map[string]any)["code"].(string)
		if r := call(t, h, "GET", "/api/admin/bookings?code="+strings.ToLower(code), desk, nil); len(r.Body["items"].([]any)) != 1 {
			t.Fatalf("by code: %s", r.Raw)
		}
		if r := call(t, h, "POST", fmt.Sprintf("/api/admin/bookings/%d/complete", todays), desk, nil); r.Status != 409 {
			t.Fatalf("complete before check-in: %d", r.Status)
		}
		if r := call(t, h, "POST", fmt.Sprintf("/api/admin/bookings/%d/check-in", todays), desk, nil); r.Status != 200 || r.Body["status"] != "checked_in" {
			t.Fatalf("check in: %d %s", r.Status, r.Raw)
		}
		if r := call(t, h, "POST", fmt.Sprintf("/api/admin/bookings/%d/complete", todays), desk, nil); r.Status != 200 || r.Body["status"] != "completed" {
			t.Fatalf("complete: %d %s", r.Status, r.Raw)
		}
		var survey model.Notification
		if err := a.DB.Gorm().Where("patient_id = ? AND reason = ?", pid, notify.ReasonSurveyInvite).Take(&survey).Error; err != nil {
			t.Fatal("completion wrote no survey invitation")
		}
		mkt := newStaff(t, a, admin, "mkt", "marketing")
		if r := call(t, h, "POST", fmt.Sprintf("/api/admin/bookings/%d/check-in", todays), mkt, nil); r.Status != 403 {
			t.Fatalf("marketing at the front desk: %d", r.Status)
		}
		// Day's end: yesterday's booking nobody came to becomes a no-show with a follow-up.
		if err := a.Scheduler.Tick(ctx); err != nil {
			t.Fatal(err)
		}
		var y model.Booking
		a.DB.Gorm().Where("id = ?", yesterdays).Take(&y)
		var follow int64
		a.DB.Gorm().Model(&model.Notification{}).Where("patient_id = ? AND reason = ?", pid, notify.ReasonNoShow).Count(&follow)
		if y.Status != model.BookingNoShow || y.ActiveDay != nil || follow != 1 {
			t.Fatalf("no-show: %+v follow-ups=%d", y, follow)
		}
	})
}

func TestStaffSchedules(t *testing.T) {
	a := newApp(t, "sqlite", nil)
	h := a.Router
	admin := staffLogin(t, h, app.DemoAdminUser, app.DemoAdminPassword)
	from := time.Now().In(model.Shanghai).AddDate(0, 0, 7)
	body := map[string]any{"from": from.Format(time.DateOnly), "to": from.AddDate(0, 0, 6).Format(time.DateOnly), "group": "vip",
		"weekdays": map[string]any{"1": []map[string]any{{"start": "08:00", "end": "09:00", "capacity": 3}}, "3": []map[string]any{{"start": "08:00", "end": "09:00", "capacity": 3}}}}
	r := call(t, h, "POST", "/api/admin/schedules", admin, body)
	if r.Status != 200 || r.Body["slots"].(float64) != 2 {
		t.Fatalf("generate: %d %s", r.Status, r.Raw)
	}
	if r := call(t, h, "POST", "/api/admin/schedules", admin, map[string]any{"from": "x", "to": "y", "weekdays": map[string]any{}}); r.Status != 422 {
		t.Fatalf("bad schedule: %d", r.Status)
	}
	p := call(t, h, "POST", "/api/admin/packages", admin, map[string]any{"name": "VIP 深度体检", "price_fen": 588000, "group": "vip", "items": []string{"胃镜", "肠镜"}})
	if p.Status != 201 {
		t.Fatalf("package: %d %s", p.Status, p.Raw)
	}
	tok, _ := login(t, h, "dev:vip")
	slots := call(t, h, "GET", fmt.Sprintf("/api/mp/packages/%v/slots?from=%s&to=%s", p.Body["id"], from.Format(time.DateOnly), from.AddDate(0, 0, 6).Format(time.DateOnly)), tok, nil)
	if items := slots.Body["items"].([]any); len(items) != 2 || items[0].(map[string]any)["capacity"].(float64) != 3 {
		t.Fatalf("the vip package lists the vip schedule only: %s", slots.Raw)
	}
	if r := call(t, h, "POST", "/api/admin/closed-days", admin, map[string]any{"date": time.Now().In(model.Shanghai).AddDate(0, 0, 3).Format(time.DateOnly), "reason": "元旦"}); r.Status != 200 || r.Body["cancelled_bookings"] != float64(0) {
		t.Fatalf("close day: %d %s", r.Status, r.Raw)
	}
	pkg := anyPackage(t, a)
	day3 := time.Now().In(model.Shanghai).AddDate(0, 0, 3).Format(time.DateOnly)
	list := call(t, h, "GET", fmt.Sprintf("/api/mp/packages/%d/slots?from=%s&to=%s", pkg.ID, day3, day3), tok, nil)
	if len(list.Body["items"].([]any)) != 0 {
		t.Fatalf("a closed day still lists slots: %s", list.Raw)
	}
	var closedSlot model.Slot
	a.DB.Gorm().Where("date = ? AND slot_group = ?", day3, "").Take(&closedSlot)
	if r := bookCall(t, h, tok, "closed", map[string]any{"package_id": pkg.ID, "slot_id": closedSlot.ID}); r.Status != 422 || r.ErrCode() != "slot_closed" {
		t.Fatalf("booking a closed day: %d %s", r.Status, r.Raw)
	}
	if r := call(t, h, "GET", "/api/admin/closed-days", admin, nil); len(r.Body["items"].([]any)) != 1 || r.Body["items"].([]any)[0].(map[string]any)["reason"] != "元旦" {
		t.Fatalf("closed days: %s", r.Raw)
	}
	// Reopened, the day takes bookings at once (no cached "closed" lingers).
	if r := call(t, h, "DELETE", "/api/admin/closed-days/"+day3, admin, nil); r.Status != 204 {
		t.Fatalf("reopen day: %d %s", r.Status, r.Raw)
	}
	if r := call(t, h, "GET", "/api/admin/closed-days", admin, nil); len(r.Body["items"].([]any)) != 0 {
		t.Fatalf("closed days after reopening: %s", r.Raw)
	}
	if r := bookCall(t, h, tok, "reopened", map[string]any{"package_id": pkg.ID, "slot_id": closedSlot.ID}); r.Status != 201 {
		t.Fatalf("booking a reopened day: %d %s", r.Status, r.Raw)
	}
}

// Eleven months after the last completed checkup, with nothing booked
// since, the patient is invited to a re-check, once.
func TestAnnualRecheckRule(t *testing.T) {
	forEachBackend(t, nil, func(t *testing.T, a *app.App) {
		ctx := context.Background()
		_, due := login(t, a.Router, "dev:yearly")
		_, rebooked := login(t, a.Router, "dev:rebooked")
		_, recent := login(t, a.Router, "dev:recent")
		pkg := anyPackage(t, a)
		now := time.Date(2026, 11, 24, 10, 0, 0, 0, model.Shanghai)
		mk := func(pid uint64, date, status string) {
			b := model.Booking{Code: fmt.Sprintf("Y%d%s", pid, date[:7]), PatientID: pid, PersonKey: fmt.Sprintf("p:%d", pid), PackageID: pkg.ID,
				SlotID: 1, Date: date, Status: status, IdempotencyKey: date}
			if err := a.DB.Gorm().Create(&b).Error; err != nil {
				t.Fatal(err)
			}
		}
		mk(due, "2025-12-01", model.BookingCompleted)
		mk(rebooked, "2025-12-01", model.BookingCompleted)
		mk(rebooked, "2026-12-05", model.BookingBooked)
		mk(recent, "2026-06-01", model.BookingCompleted)
		for i := 0; i < 2; i++ { // twice: still one invitation
			if err := a.Bookings.AnnualRecheck(ctx, now); err != nil {
				t.Fatal(err)
			}
		}
		var got []model.Notification
		a.DB.Gorm().Where("reason = ?", notify.ReasonAnnualRecheck).Find(&got)
		if len(got) != 1 || got[0].PatientID != due {
			t.Fatalf("re-check invitations: %+v", got)
		}
	})
}

// A script hammering the booking endpoint is slowed per patient (not per
// address: many patients share one hospital Wi-Fi).
func TestBookingRateLimitedPerPatient(t *testing.T) {
	a := newApp(t, "sqlite", nil)
	pkg := anyPackage(t, a)
	sl := testSlot(t, a, "06:00", 100)
	tok, _ := login(t, a.Router, "dev:script")
	last := 0
	for i := 0; i < 31; i++ {
		last = bookCall(t, a.Router, tok, fmt.Sprintf("s%d", i), map[string]any{"package_id": pkg.ID, "slot_id": sl.ID}).Status
	}
	if last != 429 {
		t.Fatalf("31st attempt in a minute: %d, want 429", last)
	}
	other, _ := login(t, a.Router, "dev:neighbour")
	if r := bookCall(t, a.Router, other, "n", map[string]any{"package_id": pkg.ID, "slot_id": sl.ID}); r.Status != 201 {
		t.Fatalf("another patient from the same address: %d %s", r.Status, r.Raw)
	}
}

// No-show only once the day has begun; the front desk undoes a mistaken
// no-show or check-in on the day (audited), and not another day.
func TestNoShowAndUndo(t *testing.T) {
	forEachBackend(t, nil, func(t *testing.T, a *app.App) {
		h := a.Router
		admin := staffLogin(t, h, app.DemoAdminUser, app.DemoAdminPassword)
		desk := newStaff(t, a, admin, "desk", "frontdesk")
		tok, pid := login(t, h, "dev:noshow")
		sl := testSlot(t, a, "06:00", 5)
		future := bookCall(t, h, tok, "ns1", map[string]any{"package_id": anyPackage(t, a).ID, "slot_id": sl.ID})
		fid := uint64(future.Body["id"].(float64))
		if r := call(t, h, "POST", fmt.Sprintf("/api/admin/bookings/%d/no-show", fid), desk, nil); r.Status != 422 || r.ErrCode() != "day_not_begun" {
			t.Fatalf("no-show three days ahead: %d %s", r.Status, r.Raw)
		}
		var missed int64
		a.DB.Gorm().Model(&model.Notification{}).Where("patient_id = ? AND reason = ?", pid, notify.ReasonNoShow).Count(&missed)
		if b := call(t, h, "GET", fmt.Sprintf("/api/mp/bookings/%d", fid), tok, nil); b.Body["status"] != "booked" || missed != 0 {
			t.Fatalf("a refused no-show changed the booking: %s, %d notices", b.Raw, missed)
		}
		today := bookToday(t, a, pid, "05:30")
		if r := call(t, h, "POST", fmt.Sprintf("/api/admin/bookings/%d/no-show", today.ID), desk, nil); r.Status != 200 || r.Body["status"] != "no_show" {
			t.Fatalf("no-show today: %d %s", r.Status, r.Raw)
		}
		r := call(t, h, "POST", fmt.Sprintf("/api/admin/bookings/%d/undo", today.ID), desk, nil)
		if r.Status != 200 || r.Body["status"] != "booked" {
			t.Fatalf("undo the no-show: %d %s", r.Status, r.Raw)
		}
		var notice model.Notification
		a.DB.Gorm().Where("patient_id = ? AND reason = ?", pid, notify.ReasonNoShow).Take(&notice)
		if notice.Status != model.NotifyCancelled {
			t.Fatalf("the missed notice after the undo: %s", notice.Status)
		}
		// It holds its day again: another booking that day is refused.
		var b model.Booking
		a.DB.Gorm().Where("id = ?", today.ID).Take(&b)
		if b.ActiveDay == nil || *b.ActiveDay != b.Date {
			t.Fatalf("undone booking does not hold its day: %+v", b)
		}
		if r := call(t, h, "POST", fmt.Sprintf("/api/admin/bookings/%d/check-in", today.ID), desk, nil); r.Status != 200 {
			t.Fatalf("check in: %d %s", r.Status, r.Raw)
		}
		if r := call(t, h, "POST", fmt.Sprintf("/api/admin/bookings/%d/undo", today.ID), desk, nil); r.Status != 200 || r.Body["status"] != "booked" || r.Body["checked_in_at"] != nil {
			t.Fatalf("undo the check-in: %d %s", r.Status, r.Raw)
		}
		if r := call(t, h, "POST", fmt.Sprintf("/api/admin/bookings/%d/undo", today.ID), desk, nil); r.Status != 409 || r.ErrCode() != "not_undoable" {
			t.Fatalf("undo a booked booking: %d %s", r.Status, r.Raw)
		}
		// A past day's no-show stays.
		a.DB.Gorm().Model(&model.Booking{}).Where("id = ?", fid).Updates(map[string]any{"status": "no_show", "active_day": nil})
		if r := call(t, h, "POST", fmt.Sprintf("/api/admin/bookings/%d/undo", fid), desk, nil); r.Status != 409 {
			t.Fatalf("undo another day's no-show: %d %s", r.Status, r.Raw)
		}
		au := call(t, h, "GET", fmt.Sprintf("/api/admin/audit?patient_id=%d&action=booking.undo", pid), admin, nil)
		if items := au.Body["items"].([]any); len(items) != 2 {
			t.Fatalf("undo not audited: %s", au.Raw)
		}
	})
}

// Closing a day that has bookings is refused with their count, unless the
// request cancels them: then each is cancelled at once, its seat and
// coupon return and its patient is told.
func TestClosingADayWithBookings(t *testing.T) {
	forEachBackend(t, nil, func(t *testing.T, a *app.App) {
		h := a.Router
		ctx := context.Background()
		admin := staffLogin(t, h, app.DemoAdminUser, app.DemoAdminPassword)
		sl := testSlot(t, a, "06:00", 5)
		var ids []uint64
		var coupon float64
		for i := 0; i < 3; i++ {
			tok, pid := login(t, h, fmt.Sprintf("dev:closed%d", i))
			body := map[string]any{"package_id": anyPackage(t, a).ID, "slot_id": sl.ID}
			if i == 0 { // one pays with a coupon
				rw, _ := a.Points.SaveReward(ctx, service.System, model.Reward{Name: "代金券", Kind: model.RewardCoupon, CostPoints: 10, Stock: 5, CouponValueFen: 1000, Active: true})
				grantPoints(t, a, pid, 10)
				coupon = redeemCall(t, a, tok, rw.ID, "c").Body["coupon"].(map[string]any)["id"].(float64)
				body["coupon_id"] = coupon
			}
			r := bookCall(t, h, tok, "k", body)
			if r.Status != 201 {
				t.Fatalf("book: %d %s", r.Status, r.Raw)
			}
			ids = append(ids, uint64(r.Body["id"].(float64)))
		}
		var used model.Coupon
		if a.DB.Gorm().Where("id = ?", uint64(coupon)).Take(&used); used.Status != model.CouponUsed {
			t.Fatalf("the coupon was not used on the booking: %+v", used)
		}
		r := call(t, h, "POST", "/api/admin/closed-days", admin, map[string]any{"date": sl.Date, "reason": "设备检修"})
		if r.Status != 409 || r.ErrCode() != "day_has_bookings" || r.Body["error"].(map[string]any)["details"].(map[string]any)["bookings"] != float64(3) {
			t.Fatalf("close a day with bookings: %d %s", r.Status, r.Raw)
		}
		var n int64
		a.DB.Gorm().Model(&model.ClosedDay{}).Where("date = ?", sl.Date).Count(&n)
		var s model.Slot
		a.DB.Gorm().Where("id = ?", sl.ID).Take(&s)
		if n != 0 || s.Closed || s.Booked != 3 {
			t.Fatalf("a refused close changed the day: closed days %d, slot %+v", n, s)
		}
		r = call(t, h, "POST", "/api/admin/closed-days", admin, map[string]any{"date": sl.Date, "reason": "设备检修", "cancel_bookings": true})
		if r.Status != 200 || r.Body["cancelled_bookings"] != float64(3) {
			t.Fatalf("close and cancel: %d %s", r.Status, r.Raw)
		}
		a.DB.Gorm().Where("id = ?", sl.ID).Take(&s)
		if !s.Closed || s.Booked != 0 {
			t.Fatalf("slot after closing: %+v", s)
		}
		for _, id := range ids {
			var b model.Booking
			a.DB.Gorm().Where("id = ?", id).Take(&b)
			var told, reminders int64
			var notices []model.Notification // params are sealed: read them back
			a.DB.Gorm().Where("patient_id = ? AND reason = ?", b.PatientID, notify.ReasonBookingCancelled).Find(&notices)
			for _, n := range notices {
				if strings.Contains(n.Params, "设备检修") {
					told++
				}
			}
			a.DB.Gorm().Model(&model.Notification{}).Where("patient_id = ? AND reason = ? AND status = ?", b.PatientID, notify.ReasonCheckupReminder, model.NotifyPending).Count(&reminders)
			if b.Status != model.BookingCancelled || b.ActiveDay != nil || told != 1 || reminders != 0 {
				t.Errorf("booking %d after closing its day: %s, told %d, reminders pending %d", id, b.Status, told, reminders)
			}
		}
		var c model.Coupon
		a.DB.Gorm().Where("id = ?", uint64(coupon)).Take(&c)
		if c.Status != model.CouponUnused || c.BookingID != nil {
			t.Fatalf("the coupon did not return: %+v", c)
		}
	})
}

// The front desk finds a patient's bookings by phone tail, HIS id and name,
// and the day list says who comes, with a masked phone.
func TestFrontDeskSearch(t *testing.T) {
	forEachBackend(t, nil, func(t *testing.T, a *app.App) {
		h := a.Router
		admin := staffLogin(t, h, app.DemoAdminUser, app.DemoAdminPassword)
		desk := newStaff(t, a, admin, "desk", "frontdesk")
		tok, pid := login(t, h, "dev:searched")
		call(t, h, "PUT", "/api/mp/me", tok, map[string]any{"name": "赵晓燕"})
		if r := call(t, h, "POST", "/api/mp/phone", tok, map[string]string{"code": "dev:13912345678"}); r.Status != 200 {
			t.Fatalf("bind: %d %s", r.Status, r.Raw)
		}
		a.DB.Gorm().Model(&model.Patient{}).Where("id = ?", pid).Update("his_id", "HIS-5566")
		fm := call(t, h, "POST", "/api/mp/family", tok, map[string]any{"name": "赵妈妈", "relation": "parent", "gender": "female", "phone": "13700001111"})
		sl := testSlot(t, a, "06:00", 5)
		mine := bookCall(t, h, tok, "s1", map[string]any{"package_id": anyPackage(t, a).ID, "slot_id": sl.ID})
		sl2 := testSlot(t, a, "06:30", 5)
		mum := bookCall(t, h, tok, "s2", map[string]any{"package_id": anyPackage(t, a).ID, "slot_id": sl2.ID, "family_member_id": fm.Body["id"]})
		if mine.Status != 201 || mum.Status != 201 {
			t.Fatalf("book: %s %s", mine.Raw, mum.Raw)
		}
		find := func(q string) []any {
			t.Helper()
			r := call(t, h, "GET", "/api/admin/bookings?q="+url.QueryEscape(q), desk, nil)
			if r.Status != 200 {
				t.Fatalf("search %q: %d %s", q, r.Status, r.Raw)
			}
			return r.Body["items"].([]any)
		}
		for q, want := range map[string]int{"5678": 1, "1111": 1, "HIS-5566": 1, "赵晓": 1, "赵": 2, "13912345678": 2, mine.Body["code"].(string): 1, "0000": 0, "钱": 0} {
			if got := find(q); len(got) != want {
				t.Errorf("search %q: %d bookings, want %d: %v", q, len(got), want, got)
			}
		}
		day := call(t, h, "GET", "/api/admin/bookings?date="+sl.Date, desk, nil).Body["items"].([]any)
		people := map[string]string{}
		for _, it := range day {
			m := it.(map[string]any)
			people[m["person_name"].(string)] = m["phone"].(string)
		}
		if people["赵晓燕"] != "139****5678" || people["赵妈妈"] != "137****1111" {
			t.Fatalf("the day list does not say who comes: %v", day)
		}
		if r := call(t, h, "GET", "/api/mp/bookings", tok, nil); strings.Contains(string(r.Raw), "person_name") {
			t.Fatalf("the patient's list carries staff fields: %s", r.Raw)
		}
	})
}

// A patient's own booking and cancellation show in their next listing at
// once: on the instance that took it (its cached listing is dropped) and on
// another instance (told through Redis), not up to a second later.
func TestOwnBookingShowsInTheNextListing(t *testing.T) {
	prefix := "careloop-test-" + testenv.Suffix() + ":"
	rdb := testenv.Redis(t)
	shared := func(c *app.Config) { c.RedisAddr, c.RedisPrefix = testenv.RedisAddr(), prefix }
	a1 := newApp(t, "mysql", shared)
	a2 := newApp(t, "mysql", func(c *app.Config) { shared(c); c.MySQLDSN = a1.Cfg.MySQLDSN })
	t.Cleanup(func() { testenv.DeletePrefix(rdb.Client(), prefix) })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, a := range []*app.App{a1, a2} {
		go func() { _ = a.Deps.Bookings.Watch(ctx) }()
	}
	time.Sleep(100 * time.Millisecond) // both listening
	tok, _ := login(t, a1.Router, "dev:lister")
	pkg := anyPackage(t, a1)
	remaining := func(h http.Handler, slotID uint64) float64 {
		t.Helper()
		r := call(t, h, "GET", fmt.Sprintf("/api/mp/packages/%d/slots", pkg.ID), tok, nil)
		for _, it := range r.Body["items"].([]any) {
			if s := it.(map[string]any); uint64(s["id"].(float64)) == slotID {
				return s["remaining"].(float64)
			}
		}
		t.Fatalf("slot %d not listed: %s", slotID, r.Raw)
		return 0
	}
	first := call(t, a1.Router, "GET", fmt.Sprintf("/api/mp/packages/%d/slots", pkg.ID), tok, nil).Body["items"].([]any)[0].(map[string]any)
	slotID := uint64(first["id"].(float64))
	before := remaining(a1.Router, slotID)
	if remaining(a2.Router, slotID) != before { // both instances now hold the listing in their caches
		t.Fatal("the instances disagree before booking")
	}
	r := bookCall(t, a1.Router, tok, "fresh-1", map[string]any{"package_id": pkg.ID, "slot_id": slotID})
	if r.Status != 201 {
		t.Fatalf("book: %d %s", r.Status, r.Raw)
	}
	if got := remaining(a1.Router, slotID); got != before-1 {
		t.Fatalf("the instance that booked lists %v seats, want %v", got, before-1)
	}
	deadline := time.Now().Add(200 * time.Millisecond) // well inside the listing cache's second
	for remaining(a2.Router, slotID) != before-1 {
		if time.Now().After(deadline) {
			t.Fatal("the other instance still lists the seat as free")
		}
		time.Sleep(5 * time.Millisecond)
	}
	id := uint64(r.Body["id"].(float64))
	if c := call(t, a2.Router, "POST", fmt.Sprintf("/api/mp/bookings/%d/cancel", id), tok, nil); c.Status != 200 {
		t.Fatalf("cancel: %d %s", c.Status, c.Raw)
	}
	if got := remaining(a2.Router, slotID); got != before {
		t.Fatalf("after cancelling, the instance lists %v seats, want %v", got, before)
	}
	deadline = time.Now().Add(200 * time.Millisecond)
	for remaining(a1.Router, slotID) != before {
		if time.Now().After(deadline) {
			t.Fatal("the first instance still lists the cancelled seat as taken")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
