package app_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"careloop/app"
	"careloop/model"
	"careloop/notify"
)

// A patient accepts a subscription in the mini-program; a notice written to
// the outbox reaches them through the sandbox; staff see and manage it.
func TestSubscriptionsToDelivery(t *testing.T) {
	forEachBackend(t, nil, func(t *testing.T, a *app.App) {
		h := a.Router
		ctx := context.Background()
		tok, pid := login(t, h, "dev:alice")
		tm := call(t, h, "GET", "/api/mp/subscriptions/templates?scene=booking", tok, nil)
		items := tm.Body["items"].([]any)
		if tm.Status != 200 || len(items) == 0 {
			t.Fatalf("templates: %d %s", tm.Status, tm.Raw)
		}
		tmpl := items[0].(map[string]any)["template_id"].(string)
		if r := call(t, h, "GET", "/api/mp/subscriptions/templates?scene=nowhere", tok, nil); r.Status != 400 {
			t.Fatalf("bad scene: %d", r.Status)
		}
		r := call(t, h, "POST", "/api/mp/subscriptions", tok, map[string]any{"results": map[string]string{tmpl: "accept"}})
		if r.Status != 200 || r.Body["credits"].(map[string]any)[tmpl].(float64) != 1 {
			t.Fatalf("record: %d %s", r.Status, r.Raw)
		}
		if r := call(t, h, "POST", "/api/mp/subscriptions", tok, map[string]any{"results": map[string]string{"forged": "accept"}}); r.Status != 422 {
			t.Fatalf("unknown template: %d", r.Status)
		}

		if _, err := a.Outbox.Enqueue(ctx, notify.Notice{PatientID: pid, Reason: notify.ReasonBookingConfirmed, Occurrence: "booking-1",
			Params: map[string]string{"package": "年度体检", "time": time.Now().Add(24 * time.Hour).Format(time.RFC3339), "note": "请空腹"}}); err != nil {
			t.Fatal(err)
		}
		if _, err := a.Dispatcher.ProcessDue(ctx); err != nil {
			t.Fatal(err)
		}
		msgs := call(t, h, "GET", "/sandbox/wechat/messages", "", nil).Body["items"].([]any)
		if len(msgs) != 1 || msgs[0].(map[string]any)["touser"] != "alice" || msgs[0].(map[string]any)["errcode"].(float64) != 0 {
			t.Fatalf("sandbox messages: %v", msgs)
		}

		// Staff see it with counts; a second notice without a credit is undeliverable, then retried by hand.
		a.Outbox.Enqueue(ctx, notify.Notice{PatientID: pid, Reason: notify.ReasonBookingConfirmed, Occurrence: "booking-2",
			Params: map[string]string{"package": "入职体检", "time": time.Now().Add(48 * time.Hour).Format(time.RFC3339)}})
		a.Dispatcher.ProcessDue(ctx)
		desk := func() string {
			admin := staffLogin(t, h, app.DemoAdminUser, app.DemoAdminPassword)
			return newStaff(t, a, admin, "desk", "frontdesk")
		}()
		list := call(t, h, "GET", fmt.Sprintf("/api/admin/notifications?patient_id=%d", pid), desk, nil)
		counts := list.Body["counts"].(map[string]any)
		if counts["sent"].(float64) != 1 || counts["undeliverable"].(float64) != 1 {
			t.Fatalf("counts: %s", list.Raw)
		}
		var und model.Notification
		a.DB.Gorm().Where("status = ?", model.NotifyUndeliverable).Take(&und)
		call(t, h, "POST", "/api/mp/subscriptions", tok, map[string]any{"results": map[string]string{tmpl: "accept"}})
		if r := call(t, h, "POST", fmt.Sprintf("/api/admin/notifications/%d/retry", und.ID), desk, nil); r.Status != 200 || r.Body["status"] != "pending" {
			t.Fatalf("retry: %d %s", r.Status, r.Raw)
		}
		a.Dispatcher.ProcessDue(ctx)
		a.DB.Gorm().Where("id = ?", und.ID).Take(&und)
		if und.Status != model.NotifySent {
			t.Fatalf("after retry: %+v", und)
		}
		if r := call(t, h, "POST", fmt.Sprintf("/api/admin/notifications/%d/cancel", und.ID), desk, nil); r.Status != 409 {
			t.Fatalf("cancel a sent notice: %d", r.Status)
		}

		// Preferences.
		if r := call(t, h, "PUT", "/api/mp/notification-preferences", tok, map[string]bool{"care": false}); r.Status != 200 || r.Body["care"] != false || r.Body["marketing"] != true {
			t.Fatalf("prefs: %d %s", r.Status, r.Raw)
		}
		if r := call(t, h, "PUT", "/api/mp/notification-preferences", tok, map[string]bool{"service": false}); r.Status != 422 {
			t.Fatalf("service notices cannot be turned off: %d", r.Status)
		}
	})
}

func TestCareRulesScheduler(t *testing.T) {
	forEachBackend(t, nil, func(t *testing.T, a *app.App) {
		h := a.Router
		ctx := context.Background()
		admin := staffLogin(t, h, app.DemoAdminUser, app.DemoAdminPassword)
		today := time.Now().In(model.Shanghai)
		rules := map[string]any{"reminder_time": "18:00", "survey_delay_hours": 2, "recheck_months": 11, "birthday_time": "00:00",
			"birthday_text": "生日快乐", "holiday_time": "00:00", "holidays": []map[string]string{{"date": today.Format("2006-01-02"), "title": "冬至", "text": "冬至快乐"}}}
		if r := call(t, h, "PUT", "/api/admin/notification-rules", admin, rules); r.Status != 200 {
			t.Fatalf("save rules: %d %s", r.Status, r.Raw)
		}
		if r := call(t, h, "PUT", "/api/admin/notification-rules", admin, map[string]any{"reminder_time": "25:99"}); r.Status != 422 {
			t.Fatalf("bad rules: %d", r.Status)
		}
		tok, pid := login(t, h, "dev:birthday")
		call(t, h, "PUT", "/api/mp/me", tok, map[string]any{"birth_date": today.AddDate(-40, 0, 0).Format("2006-01-02")})
		_, other := login(t, h, "dev:notbirthday")
		// Two instances tick at once: one notice per occurrence.
		done := make(chan error, 2)
		for i := 0; i < 2; i++ {
			go func() { done <- a.Scheduler.Tick(ctx) }()
		}
		for i := 0; i < 2; i++ {
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		}
		var n int64
		a.DB.Gorm().Model(&model.Notification{}).Where("reason = ? AND patient_id = ?", notify.ReasonBirthday, pid).Count(&n)
		if n != 1 {
			t.Fatalf("birthday notices: %d, want 1", n)
		}
		a.DB.Gorm().Model(&model.Notification{}).Where("reason = ? AND patient_id = ?", notify.ReasonBirthday, other).Count(&n)
		if n != 0 {
			t.Fatal("a birthday greeting for someone else's birthday")
		}
		a.DB.Gorm().Model(&model.Notification{}).Where("reason = ?", notify.ReasonHoliday).Count(&n)
		if n != 2 {
			t.Fatalf("holiday notices: %d, want one per patient (2)", n)
		}
	})
}

// Staff read the kinds of notice and their channels, as configured; a
// patient cannot.
func TestNotificationReasonsListed(t *testing.T) {
	a := newApp(t, "sqlite", nil)
	admin := staffLogin(t, a.Router, app.DemoAdminUser, app.DemoAdminPassword)
	r := call(t, a.Router, "GET", "/api/admin/notification-reasons", admin, nil)
	if r.Status != 200 {
		t.Fatalf("reasons: %d %s", r.Status, r.Raw)
	}
	found := false
	for _, it := range r.Body["items"].([]any) {
		m := it.(map[string]any)
		if m["name"] == notify.ReasonBookingConfirmed {
			found = m["title"] != "" && len(m["channels"].([]any)) > 0
		}
	}
	if !found {
		t.Fatalf("booking_confirmed with its channels not listed: %s", r.Raw)
	}
	tok, _ := login(t, a.Router, "dev:reasons")
	if r := call(t, a.Router, "GET", "/api/admin/notification-reasons", tok, nil); r.Status != 403 {
		t.Fatalf("a patient: %d", r.Status)
	}
}
