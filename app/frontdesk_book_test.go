package app_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"careloop/app"
	"careloop/model"
	"careloop/notify"
	"careloop/service"
)

// deskBook posts a front-desk booking with an idempotency key.
func deskBook(t *testing.T, h http.Handler, token, key string, body any) response {
	t.Helper()
	req := httptest.NewRequest("POST", "/api/admin/bookings", strings.NewReader(jsonOf(body)))
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

// The front desk books for a walk-in (registered in the same step), books
// again for them by patient id, moves and cancels a booking; the patient is
// told each time, seats follow, and the audit log says who did it.
func TestFrontDeskBooksForPatients(t *testing.T) {
	forEachBackend(t, nil, func(t *testing.T, a *app.App) {
		h := a.Router
		admin := staffLogin(t, h, app.DemoAdminUser, app.DemoAdminPassword)
		desk := newStaff(t, a, admin, "desk", "frontdesk")
		mkt := newStaff(t, a, admin, "mkt", "marketing")
		pkg := anyPackage(t, a)
		first, second := testSlot(t, a, "06:00", 1), testSlot(t, a, "07:00", 5)
		walkIn := map[string]any{"patient": map[string]any{"name": "赵大海", "phone": "139 0000 7777", "gender": "男"}, "package_id": pkg.ID, "slot_id": first.ID}

		if r := deskBook(t, h, mkt, "k1", walkIn); r.Status != 403 {
			t.Fatalf("marketing books: %d", r.Status)
		}
		if r := deskBook(t, h, desk, "", walkIn); r.Status != 400 || r.ErrCode() != "idempotency_key_required" {
			t.Fatalf("no key: %d %s", r.Status, r.Raw)
		}
		if r := deskBook(t, h, desk, "k0", map[string]any{"package_id": pkg.ID, "slot_id": first.ID}); r.Status != 400 || r.ErrCode() != "patient_required" {
			t.Fatalf("no patient: %d %s", r.Status, r.Raw)
		}
		bad := map[string]any{"patient": map[string]any{"name": "赵大海", "phone": "12345"}, "package_id": pkg.ID, "slot_id": first.ID}
		if r := deskBook(t, h, desk, "k-bad", bad); r.Status != 422 || r.ErrCode() != "invalid_phone" {
			t.Fatalf("bad phone: %d %s", r.Status, r.Raw)
		}
		r := deskBook(t, h, desk, "k1", walkIn)
		if r.Status != 201 || r.Body["person_name"] != "赵大海" || r.Body["phone"] != "139****7777" || r.Body["status"] != "booked" {
			t.Fatalf("walk-in: %d %s", r.Status, r.Raw)
		}
		bookingID := uint64(r.Body["id"].(float64))
		patientID := uint64(r.Body["patient_id"].(float64))
		var pt model.Patient
		if err := a.DB.Gorm().Where("id = ?", patientID).Take(&pt).Error; err != nil || pt.Name != "赵大海" || pt.Gender != "male" || pt.PhoneTail != "7777" || pt.Source != "前台登记" {
			t.Fatalf("the registered patient: %+v %v", pt, err)
		}
		// A double click: the same booking, no second seat (the slot has one).
		if again := deskBook(t, h, desk, "k1", walkIn); again.Status != 201 || uint64(again.Body["id"].(float64)) != bookingID || again.Header.Get("Idempotent-Replayed") != "true" {
			t.Fatalf("replay: %d %s", again.Status, again.Raw)
		}
		// The same phone under the same name is the same patient (who has a
		// booking that day already); under another name it is refused.
		r = deskBook(t, h, desk, "k2", map[string]any{"patient": map[string]any{"name": "赵大海", "phone": "13900007777"}, "package_id": pkg.ID, "slot_id": second.ID})
		if r.Status != 409 || r.ErrCode() != "duplicate_booking" {
			t.Fatalf("the same person again that day: %d %s", r.Status, r.Raw)
		}
		r = deskBook(t, h, desk, "k3", map[string]any{"patient": map[string]any{"name": "钱小红", "phone": "13900007777"}, "package_id": pkg.ID, "slot_id": second.ID})
		if r.Status != 409 || r.ErrCode() != "patient_exists" || uint64(r.Body["error"].(map[string]any)["details"].(map[string]any)["patient_id"].(float64)) != patientID {
			t.Fatalf("another name on a registered phone: %d %s", r.Status, r.Raw)
		}
		if n, _ := model.Count(a.DB.Gorm().Model(&model.Patient{}).Where("phone_tail = ?", "7777")); n != 1 {
			t.Fatalf("patients with the phone: %d", n)
		}
		// One booking per person per day, whoever books.
		if r := deskBook(t, h, desk, "k4", map[string]any{"patient_id": patientID, "package_id": pkg.ID, "slot_id": second.ID}); r.Status != 409 || r.ErrCode() != "duplicate_booking" {
			t.Fatalf("a second booking that day: %d %s", r.Status, r.Raw)
		}

		// Moved to the other slot: seats swap, the patient is told the new time.
		r = call(t, h, "POST", fmt.Sprintf("/api/admin/bookings/%d/reschedule", bookingID), desk, map[string]any{"slot_id": second.ID})
		if r.Status != 200 || uint64(r.Body["slot_id"].(float64)) != second.ID || r.Body["start"] != "07:00" {
			t.Fatalf("reschedule: %d %s", r.Status, r.Raw)
		}
		seats := func(id uint64) int {
			var sl model.Slot
			a.DB.Gorm().Where("id = ?", id).Take(&sl)
			return sl.Booked
		}
		if seats(first.ID) != 0 || seats(second.ID) != 1 {
			t.Fatalf("seats after the move: %d %d", seats(first.ID), seats(second.ID))
		}
		// Cancelled with a reason the patient reads.
		r = call(t, h, "POST", fmt.Sprintf("/api/admin/bookings/%d/cancel", bookingID), desk, map[string]any{"reason": "患者来电取消"})
		if r.Status != 200 || r.Body["status"] != "cancelled" || seats(second.ID) != 0 {
			t.Fatalf("cancel: %d %s (seats %d)", r.Status, r.Raw, seats(second.ID))
		}
		if r := call(t, h, "POST", fmt.Sprintf("/api/admin/bookings/%d/cancel", bookingID), desk, nil); r.Status != 422 || r.ErrCode() != "booking_not_changeable" {
			t.Fatalf("cancel twice: %d %s", r.Status, r.Raw)
		}
		var told []model.Notification
		a.DB.Gorm().Where("patient_id = ?", patientID).Order("id").Find(&told)
		reasons := []string{}
		for _, n := range told {
			reasons = append(reasons, n.Reason)
			if n.Reason == notify.ReasonBookingCancelled && !strings.Contains(jsonOf(n.Params), "患者来电取消") {
				t.Fatalf("the cancellation notice does not say why: %s", jsonOf(n.Params))
			}
		}
		want := []string{notify.ReasonBookingConfirmed, notify.ReasonCheckupReminder, notify.ReasonBookingChanged, notify.ReasonCheckupReminder, notify.ReasonBookingCancelled}
		if strings.Join(reasons, ",") != strings.Join(want, ",") {
			t.Fatalf("the patient was told %v, want %v", reasons, want)
		}
		var audited []string
		a.DB.Gorm().Model(&model.AuditLog{}).Where("patient_id = ?", patientID).Order("id").Pluck("action", &audited)
		if strings.Join(audited, ",") != "patient.desk.register,booking.desk.book,booking.desk.reschedule,booking.desk.cancel" {
			t.Fatalf("audit log: %v", audited)
		}
	})
}

// The front desk books a walk-in for a slot later today (a patient's own
// booking closed at 18:00 yesterday), and not once the slot is over.
func TestFrontDeskBooksUntilTheSlotEnds(t *testing.T) {
	a := newApp(t, "sqlite", nil)
	ctx := context.Background()
	day := time.Now().In(model.Shanghai)
	noon := time.Date(day.Year(), day.Month(), day.Day(), 12, 0, 0, 0, model.Shanghai)
	clock := service.NewBookings(a.DB, a.Outbox, a.Store, a.Store, a.CareRules, a.Points, a.Events, service.BookingConfig{}, func() time.Time { return noon })
	desk := service.NewFrontDesk(clock, a.Sealer, service.NewAudit(a.DB))
	pkg := anyPackage(t, a)
	later := model.Slot{Date: noon.Format(time.DateOnly), Start: "20:00", End: "20:30", Capacity: 3}
	over := model.Slot{Date: noon.Format(time.DateOnly), Start: "05:00", End: "05:30", Capacity: 3}
	a.DB.Gorm().Create(&later)
	a.DB.Gorm().Create(&over)
	_, pid := login(t, a.Router, "dev:walkin-today")
	patient := service.Principal{Kind: model.SubjectPatient, ID: pid}
	if _, _, err := clock.Book(ctx, patient, service.BookInput{PackageID: pkg.ID, SlotID: later.ID, IdempotencyKey: "self"}); err != service.ErrPastCutoff {
		t.Fatalf("the patient's own booking for today: %v", err)
	}
	staff := service.Principal{Kind: model.SubjectStaff, ID: 1, Role: model.RoleFrontDesk}
	if _, _, err := desk.Book(ctx, staff, service.DeskBookInput{PatientID: pid, PackageID: pkg.ID, SlotID: over.ID, IdempotencyKey: "over"}); err != service.ErrSlotOver {
		t.Fatalf("a slot that is over: %v", err)
	}
	b, created, err := desk.Book(ctx, staff, service.DeskBookInput{PatientID: pid, PackageID: pkg.ID, SlotID: later.ID, IdempotencyKey: "later"})
	if err != nil || !created || b.Date != noon.Format(time.DateOnly) {
		t.Fatalf("the desk's booking for this afternoon: %+v %v", b, err)
	}
	if _, err := desk.Reschedule(ctx, staff, b.ID, over.ID); err != service.ErrSlotOver {
		t.Fatalf("moved into a slot that is over: %v", err)
	}
}

// The front desk's list pages on the server in the day's order (date, slot
// time, booking; the 07:00 slot was made before the 06:00 one): every
// booking once, none skipped; a forged cursor is refused.
func TestFrontDeskListPages(t *testing.T) {
	forEachBackend(t, nil, func(t *testing.T, a *app.App) {
		h := a.Router
		admin := staffLogin(t, h, app.DemoAdminUser, app.DemoAdminPassword)
		desk := newStaff(t, a, admin, "desk", "frontdesk")
		pkg := anyPackage(t, a)
		slots := []model.Slot{testSlot(t, a, "07:00", 5), testSlot(t, a, "06:00", 5)} // the later slot made first
		want := map[float64]bool{}
		for i := 0; i < 7; i++ {
			r := deskBook(t, h, desk, fmt.Sprintf("page-%d", i), map[string]any{
				"patient": map[string]any{"name": fmt.Sprintf("分页%d", i), "phone": fmt.Sprintf("1370000%04d", i)}, "package_id": pkg.ID, "slot_id": slots[i%2].ID})
			if r.Status != 201 {
				t.Fatalf("book %d: %d %s", i, r.Status, r.Raw)
			}
			want[r.Body["id"].(float64)] = true
		}
		seen, pages, cursor := []map[string]any{}, 0, ""
		for {
			r := call(t, h, "GET", "/api/admin/bookings?limit=3&date="+slots[0].Date+"&cursor="+cursor, desk, nil)
			if r.Status != 200 {
				t.Fatalf("page: %d %s", r.Status, r.Raw)
			}
			for _, it := range r.Body["items"].([]any) {
				seen = append(seen, it.(map[string]any))
			}
			pages++
			if cursor = r.Body["next_cursor"].(string); cursor == "" {
				break
			}
		}
		if pages != 3 || len(seen) != 7 {
			t.Fatalf("%d bookings in %d pages", len(seen), pages)
		}
		for i, b := range seen {
			if !want[b["id"].(float64)] {
				t.Fatalf("booking %v twice or unknown", b["id"])
			}
			delete(want, b["id"].(float64))
			if i > 0 && b["start"].(string) < seen[i-1]["start"].(string) {
				t.Fatalf("out of the day's order at %d", i)
			}
		}
		if r := call(t, h, "GET", "/api/admin/bookings?cursor=bm90LWEtY3Vyc29y", desk, nil); r.Status != 400 || r.ErrCode() != "invalid_cursor" {
			t.Fatalf("a forged cursor: %d %s", r.Status, r.Raw)
		}
		if r := call(t, h, "GET", "/api/admin/bookings?limit=500", desk, nil); r.Status != 422 {
			t.Fatalf("a page of 500: %d", r.Status)
		}
	})
}

// A walk-in booked by racing requests with one key (a double click, a retry)
// is registered once and takes one seat; every request answers with that
// one booking.
func TestFrontDeskRacingWalkIn(t *testing.T) {
	forEachBackend(t, nil, func(t *testing.T, a *app.App) {
		h := a.Router
		admin := staffLogin(t, h, app.DemoAdminUser, app.DemoAdminPassword)
		desk := newStaff(t, a, admin, "desk", "frontdesk")
		pkg := anyPackage(t, a)
		sl := testSlot(t, a, "06:00", 3)
		body := map[string]any{"patient": map[string]any{"name": "冯一鸣", "phone": "13655556666"}, "package_id": pkg.ID, "slot_id": sl.ID}
		const n = 8
		ids := make([]float64, n)
		statuses := make([]int, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				r := deskBook(t, h, desk, "same-click", body)
				statuses[i] = r.Status
				if id, ok := r.Body["id"].(float64); ok {
					ids[i] = id
				}
			}()
		}
		close(start)
		wg.Wait()
		for i := range n {
			if statuses[i] != 201 || ids[i] != ids[0] {
				t.Fatalf("request %d: %d, booking %v (first %v)", i, statuses[i], ids[i], ids[0])
			}
		}
		var patients, bookings, registered int64
		a.DB.Gorm().Model(&model.Patient{}).Where("phone_tail = ?", "6666").Count(&patients)
		a.DB.Gorm().Model(&model.Booking{}).Where("slot_id = ?", sl.ID).Count(&bookings)
		a.DB.Gorm().Model(&model.AuditLog{}).Where("action = ?", service.AuditDeskRegister).Count(&registered)
		var seat model.Slot
		a.DB.Gorm().Where("id = ?", sl.ID).Take(&seat)
		if patients != 1 || bookings != 1 || registered != 1 || seat.Booked != 1 {
			t.Fatalf("patients %d, bookings %d, registrations %d, seats taken %d", patients, bookings, registered, seat.Booked)
		}
	})
}
