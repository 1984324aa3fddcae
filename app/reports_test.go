package app_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
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

const peisSecret = "sandbox-peis-secret"

func ingest(t testing.TB, h http.Handler, source, secret string, at time.Time, body []byte) response {
	req := httptest.NewRequest("POST", "/api/integrations/reports", strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/json")
	if source != "" {
		req.Header.Set("X-Careloop-Source", source)
	}
	if secret != "" {
		req.Header.Set("X-Careloop-Signature", service.Sign(secret, at, body))
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	res := response{Status: rec.Code, Raw: rec.Body.Bytes(), Header: rec.Header()}
	_ = json.Unmarshal(res.Raw, &res.Body)
	return res
}

func reportBody(externalID, bookingCode, phone, wbc string, critical bool, pdf bool) []byte {
	p := map[string]any{
		"external_id": externalID, "booking_code": bookingCode, "phone": phone, "exam_date": "2026-11-20", "doctor": "张医生",
		"sections": []map[string]any{
			{"name": "血常规", "items": []map[string]any{
				{"code": "HGB", "name": "血红蛋白", "value": "135", "unit": "g/L", "reference_range": "115-150", "abnormal": ""},
				{"code": "WBC", "name": "白细胞计数", "value": wbc, "unit": "10^9/L", "reference_range": "3.5-9.5", "abnormal": "high", "critical": critical},
			}},
		},
		"conclusions": []string{"白细胞计数偏高"}, "recommendations": []string{"建议复查血常规"},
	}
	if pdf {
		p["pdf_base64"] = base64.StdEncoding.EncodeToString([]byte("%PDF-1.4 sandbox report"))
	}
	b, _ := json.Marshal(p)
	return b
}

// bookToday books patient pid into a slot of today (made two days ago).
func bookToday(t *testing.T, a *app.App, pid uint64, start string) *model.Booking {
	t.Helper()
	today := time.Now().In(model.Shanghai)
	sl := model.Slot{Date: today.Format(time.DateOnly), Start: start, End: start[:3] + "59", Capacity: 5}
	if err := a.DB.Gorm().Create(&sl).Error; err != nil {
		t.Fatal(err)
	}
	early := service.NewBookings(a.DB, a.Outbox, a.Store, a.Store, a.CareRules, a.Points, a.Events, service.BookingConfig{}, func() time.Time { return today.AddDate(0, 0, -2) })
	b, _, err := early.Book(context.Background(), service.Principal{Kind: model.SubjectPatient, ID: pid},
		service.BookInput{PackageID: anyPackage(t, a).ID, SlotID: sl.ID, IdempotencyKey: "today-" + start})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestReportSignatureAndShape(t *testing.T) {
	a := newApp(t, "sqlite", nil)
	h := a.Router
	now := time.Now()
	body := reportBody("R-1", "", "13800138000", "11.2", false, false)
	cases := []struct {
		name, source, secret string
		at                   time.Time
		body                 []byte
		status               int
		code                 string
	}{
		{"unknownSource401", "hacker", peisSecret, now, body, 401, "unknown_source"},
		{"noSignature401", "peis", "", now, body, 401, "missing_signature"},
		{"badSignature401", "peis", "wrong-secret", now, body, 401, "bad_signature"},
		{"stale401", "peis", peisSecret, now.Add(-6 * time.Minute), body, 401, "stale_signature"},
		{"future401", "peis", peisSecret, now.Add(6 * time.Minute), body, 401, "stale_signature"},
		{"malformed400", "peis", peisSecret, now, []byte(`{"external_id": "x",`), 400, "invalid_report"},
		{"noPatientKey400", "peis", peisSecret, now, []byte(`{"external_id":"x","exam_date":"2026-11-20","sections":[{"name":"a","items":[]}]}`), 400, "invalid_report"},
		{"badAbnormal400", "peis", peisSecret, now, []byte(`{"external_id":"x","phone":"1","exam_date":"2026-11-20","sections":[{"name":"a","items":[{"code":"A","name":"b","abnormal":"weird"}]}]}`), 400, "invalid_report"},
		{"notPDF400", "peis", peisSecret, now, []byte(`{"external_id":"x","phone":"1","exam_date":"2026-11-20","sections":[{"name":"a","items":[]}],"pdf_base64":"aGVsbG8="}`), 400, "invalid_report"},
		{"accepted201", "peis", peisSecret, now, body, 201, ""},
	}
	for _, c := range cases {
		r := ingest(t, h, c.source, c.secret, c.at, c.body)
		if r.Status != c.status || r.ErrCode() != c.code {
			t.Errorf("%s: %d %s", c.name, r.Status, r.Raw)
		}
	}
	var n int64
	a.DB.Gorm().Model(&model.Report{}).Count(&n)
	if n != 1 {
		t.Fatalf("refused requests stored reports: %d", n)
	}
}

func TestReportLifecycle(t *testing.T) {
	forEachBackend(t, nil, func(t *testing.T, a *app.App) {
		h := a.Router
		tok, pid := login(t, h, "dev:reportee")
		pkg := anyPackage(t, a)
		// A report never completes a booking whose day has not come, and
		// an exam date in the future is refused.
		sl := testSlot(t, a, "06:00", 5)
		future := bookCall(t, h, tok, "rk", map[string]any{"package_id": pkg.ID, "slot_id": sl.ID})
		tomorrow := time.Now().In(model.Shanghai).AddDate(0, 0, 1).Format(time.DateOnly)
		ahead := strings.Replace(string(reportBody("R-099", future.Body["code"].(string), "", "11.2", false, false)), "2026-11-20", tomorrow, 1)
		if r := ingest(t, h, "peis", peisSecret, time.Now(), []byte(ahead)); r.Status != 400 || r.ErrCode() != "invalid_report" {
			t.Fatalf("exam date tomorrow: %d %s", r.Status, r.Raw)
		}
		if r := ingest(t, h, "peis", peisSecret, time.Now(), reportBody("R-098", future.Body["code"].(string), "", "11.2", false, false)); r.Status != 201 {
			t.Fatalf("report for a future booking: %d %s", r.Status, r.Raw)
		}
		var fb model.Booking
		a.DB.Gorm().Where("id = ?", uint64(future.Body["id"].(float64))).Take(&fb)
		if fb.Status != model.BookingBooked || balance(a, pid) != 0 {
			t.Fatalf("a report completed a booking days ahead: %s, points %d", fb.Status, balance(a, pid))
		}
		b := bookToday(t, a, pid, "07:00")
		code, bid := b.Code, b.ID

		r := ingest(t, h, "peis", peisSecret, time.Now(), reportBody("R-100", code, "", "11.2", false, true))
		if r.Status != 201 || r.Body["matched"] != true {
			t.Fatalf("ingest: %d %s", r.Status, r.Raw)
		}
		rid := uint64(r.Body["id"].(float64))
		var booking model.Booking
		a.DB.Gorm().Where("id = ?", bid).Take(&booking)
		if booking.Status != model.BookingCompleted {
			t.Fatalf("the report did not complete its booking: %s", booking.Status)
		}
		var ready int64
		a.DB.Gorm().Model(&model.Notification{}).Where("patient_id = ? AND reason = ?", pid, notify.ReasonReportReady).Count(&ready)
		if ready != 2 { // the future booking's report and this one
			t.Fatalf("report-ready notices: %d", ready)
		}
		// Re-sent: the same report, no new version, no second notice.
		if r := ingest(t, h, "peis", peisSecret, time.Now(), reportBody("R-100", code, "", "11.2", false, true)); r.Status != 200 || r.Body["changed"] != false {
			t.Fatalf("re-send: %d %s", r.Status, r.Raw)
		}
		// The patient reads it, abnormal items first; nobody else can.
		v := call(t, h, "GET", fmt.Sprintf("/api/mp/reports/%d", rid), tok, nil)
		ab := v.Body["abnormal_items"].([]any)
		if v.Status != 200 || len(ab) != 1 || ab[0].(map[string]any)["code"] != "WBC" || v.Body["has_pdf"] != true {
			t.Fatalf("report view: %d %s", v.Status, v.Raw)
		}
		other, _ := login(t, h, "dev:nosy")
		for _, path := range []string{fmt.Sprintf("/api/mp/reports/%d", rid), fmt.Sprintf("/api/mp/reports/%d/pdf-url", rid)} {
			if r := call(t, h, "GET", path, other, nil); r.Status != 404 {
				t.Fatalf("another patient on %s: %d", path, r.Status)
			}
		}
		// The PDF through a short-lived signed link.
		link := call(t, h, "GET", fmt.Sprintf("/api/mp/reports/%d/pdf-url", rid), tok, nil)
		url := link.Body["url"].(string)
		pdf := call(t, h, "GET", url, "", nil)
		if pdf.Status != 200 || !strings.HasPrefix(string(pdf.Raw), "%PDF-") {
			t.Fatalf("pdf: %d", pdf.Status)
		}
		if r := call(t, h, "GET", strings.Replace(url, "sig=", "sig=00", 1), "", nil); r.Status != 403 {
			t.Fatalf("tampered link: %d", r.Status)
		}
		// A correction becomes the visible version; both versions are kept.
		r = ingest(t, h, "peis", peisSecret, time.Now(), reportBody("R-100", code, "", "25.0", true, false))
		if r.Status != 200 || r.Body["changed"] != true || r.Body["version"].(float64) != 2 {
			t.Fatalf("correction: %d %s", r.Status, r.Raw)
		}
		var versions int64
		a.DB.Gorm().Model(&model.ReportVersion{}).Where("report_id = ?", rid).Count(&versions)
		v = call(t, h, "GET", fmt.Sprintf("/api/mp/reports/%d", rid), tok, nil)
		if versions != 2 || v.Body["abnormal_items"].([]any)[0].(map[string]any)["value"] != "25.0" || v.Body["critical"] != true {
			t.Fatalf("after correction: versions=%d %s", versions, v.Raw)
		}
		// A critical value: an urgent notice and a task for the doctors on duty.
		var urgent int64
		a.DB.Gorm().Model(&model.Notification{}).Where("patient_id = ? AND reason = ?", pid, notify.ReasonCriticalValue).Count(&urgent)
		admin := staffLogin(t, h, app.DemoAdminUser, app.DemoAdminPassword)
		doc := newStaff(t, a, admin, "doc", "doctor")
		tasks := call(t, h, "GET", "/api/admin/tasks", doc, nil).Body["items"].([]any)
		if urgent != 1 || len(tasks) != 1 || tasks[0].(map[string]any)["urgent"] != true {
			t.Fatalf("critical: notices=%d tasks=%v", urgent, tasks)
		}
		// Trends across reports.
		ingest(t, h, "peis", peisSecret, time.Now(), reportBody("R-101", "", "", "8.0", false, false)) // unmatched: no key fits
		// Interpretation: asked by the patient, answered by a doctor, reads audited.
		if r := call(t, h, "POST", fmt.Sprintf("/api/mp/reports/%d/interpretation-request", rid), tok, map[string]string{"question": "需要复查吗？"}); r.Status != 202 {
			t.Fatalf("ask: %d", r.Status)
		}
		if r := call(t, h, "GET", fmt.Sprintf("/api/admin/reports/%d", rid), doc, nil); r.Status != 200 {
			t.Fatalf("doctor reads: %d %s", r.Status, r.Raw)
		}
		if r := call(t, h, "POST", fmt.Sprintf("/api/admin/reports/%d/interpretation", rid), doc, map[string]string{"text": "白细胞升高，建议一周后复查。"}); r.Status != 200 || r.Body["interpreted"] != true {
			t.Fatalf("interpret: %d %s", r.Status, r.Raw)
		}
		au := call(t, h, "GET", fmt.Sprintf("/api/admin/audit?patient_id=%d&action=report.read", pid), admin, nil)
		if len(au.Body["items"].([]any)) != 1 {
			t.Fatalf("staff report read not audited: %s", au.Raw)
		}
		mkt := newStaff(t, a, admin, "mkt", "marketing")
		if r := call(t, h, "GET", fmt.Sprintf("/api/admin/reports/%d", rid), mkt, nil); r.Status != 403 {
			t.Fatalf("marketing reads a report: %d", r.Status)
		}
		// The 360 gathers bookings, notices and (for doctors) reports.
		v360 := call(t, h, "GET", fmt.Sprintf("/api/admin/patients/%d", pid), doc, nil)
		if len(v360.Body["bookings"].([]any)) != 2 || len(v360.Body["reports"].([]any)) != 2 || len(v360.Body["notifications"].([]any)) == 0 {
			t.Fatalf("doctor's 360: %s", v360.Raw)
		}
		if m := call(t, h, "GET", fmt.Sprintf("/api/admin/patients/%d", pid), mkt, nil); m.Body["reports"] != nil {
			t.Fatalf("marketing's 360 lists reports: %s", m.Raw)
		}
	})
}

func TestUnmatchedReportsAndTrends(t *testing.T) {
	forEachBackend(t, nil, func(t *testing.T, a *app.App) {
		h := a.Router
		tok, pid := login(t, h, "dev:late-binder")
		r := ingest(t, h, "peis", peisSecret, time.Now(), reportBody("R-200", "", "13700000001", "10.1", false, false))
		if r.Status != 201 || r.Body["matched"] != false {
			t.Fatalf("unknown phone: %d %s", r.Status, r.Raw)
		}
		rid := uint64(r.Body["id"].(float64))
		admin := staffLogin(t, h, app.DemoAdminUser, app.DemoAdminPassword)
		desk := newStaff(t, a, admin, "desk", "frontdesk")
		un := call(t, h, "GET", "/api/admin/reports/unmatched", desk, nil).Body["items"].([]any)
		if len(un) != 1 || !strings.Contains(un[0].(map[string]any)["match"].(string), "137****0001") {
			t.Fatalf("unmatched queue: %v", un)
		}
		if r := call(t, h, "GET", "/api/mp/reports", tok, nil); len(r.Body["items"].([]any)) != 0 {
			t.Fatal("an unmatched report reached a patient")
		}
		if r := call(t, h, "POST", fmt.Sprintf("/api/admin/reports/%d/link", rid), desk, map[string]any{"patient_id": pid}); r.Status != 200 {
			t.Fatalf("link: %d %s", r.Status, r.Raw)
		}
		if r := call(t, h, "POST", fmt.Sprintf("/api/admin/reports/%d/link", rid), desk, map[string]any{"patient_id": pid}); r.Status != 409 {
			t.Fatalf("link twice: %d", r.Status)
		}
		var ready int64
		a.DB.Gorm().Model(&model.Notification{}).Where("patient_id = ? AND reason = ?", pid, notify.ReasonReportReady).Count(&ready)
		if ready != 1 {
			t.Fatalf("linking wrote %d report-ready notices", ready)
		}
		// A second year's report, matched by phone once the patient binds it.
		call(t, h, "POST", "/api/mp/phone", tok, map[string]string{"code": "dev:13700000001"})
		body := reportBody("R-201", "", "13700000001", "12.4", false, false)
		body = []byte(strings.Replace(string(body), "2026-11-20", time.Now().In(model.Shanghai).Format(time.DateOnly), 1))
		if r := ingest(t, h, "peis", peisSecret, time.Now(), body); r.Body["matched"] != true {
			t.Fatalf("by phone: %s", r.Raw)
		}
		tr := call(t, h, "GET", "/api/mp/reports/trends?item=wbc", tok, nil)
		pts := tr.Body["items"].([]any)
		if len(pts) != 2 || pts[0].(map[string]any)["value"] != "10.1" || pts[1].(map[string]any)["value"] != "12.4" {
			t.Fatalf("trend: %s", tr.Raw)
		}
	})
}

// The same report sent many times at once is stored once.
func TestConcurrentResendsYieldOneReport(t *testing.T) {
	forEachBackend(t, nil, func(t *testing.T, a *app.App) {
		body := reportBody("R-300", "", "13600000000", "9.9", false, true)
		var wg sync.WaitGroup
		codes := make([]int, 20)
		for i := range codes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				codes[i] = ingest(t, a.Router, "peis", peisSecret, time.Now(), body).Status
			}()
		}
		wg.Wait()
		created := 0
		for _, c := range codes {
			if c == 201 {
				created++
			} else if c != 200 {
				t.Fatalf("statuses: %v", codes)
			}
		}
		var reports, versions int64
		a.DB.Gorm().Model(&model.Report{}).Count(&reports)
		a.DB.Gorm().Model(&model.ReportVersion{}).Count(&versions)
		if created != 1 || reports != 1 || versions != 1 {
			t.Fatalf("created=%d reports=%d versions=%d", created, reports, versions)
		}
	})
}

// FuzzReportIngest sends arbitrary signed bodies through the whole router:
// never a panic or a 5xx, and a 2xx only for a body the contract accepts.
//
//	go test -run '^$' -fuzz FuzzReportIngest -fuzztime 60s ./app
func FuzzReportIngest(f *testing.F) {
	f.Add(reportBody("R-1", "", "13800138000", "11.2", false, true))
	f.Add([]byte(`{"external_id":"x","phone":"1","exam_date":"2026-11-20","sections":[{"name":"a","items":[{"code":"A","name":"b"}]}]}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"external_id":"x","phone":"1","exam_date":"2026-02-30","sections":null}`))
	f.Add([]byte(`{"external_id":"\u0000","booking_code":"🙂","exam_date":"2026-11-20","sections":[{"name":"a","items":[]}],"pdf_base64":"JVBERi0="}`))
	a := newApp(f, "sqlite", nil)
	f.Fuzz(func(t *testing.T, body []byte) {
		r := ingest(t, a.Router, "peis", peisSecret, time.Now(), body)
		if r.Status >= 500 {
			t.Fatalf("%d for %q: %s", r.Status, body, r.Raw)
		}
		if r.Status < 300 {
			if _, _, err := service.ParseReport(body); err != nil {
				t.Fatalf("accepted a body the contract refuses: %q", body)
			}
		}
	})
}
