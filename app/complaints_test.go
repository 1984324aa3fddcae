package app_test

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/xuri/excelize/v2"

	"careloop/app"
	"careloop/model"
	"careloop/notify"
)

func TestComplaintWorkflowAndKPI(t *testing.T) {
	forEachBackend(t, nil, func(t *testing.T, a *app.App) {
		h := a.Router
		admin := staffLogin(t, h, app.DemoAdminUser, app.DemoAdminPassword)
		mkt := newStaff(t, a, admin, "kefu", "marketing")
		tok, pid := login(t, h, "dev:unhappy")
		if r := call(t, h, "POST", "/api/mp/complaints", tok, map[string]any{"category": "rudeness", "content": "前台工作人员态度很差，让我等了很久"}); r.Status != 422 {
			t.Fatalf("bad category: %d", r.Status)
		}
		r := call(t, h, "POST", "/api/mp/complaints", tok, map[string]any{"category": "service_attitude", "content": "前台工作人员态度很差，让我等了很久"})
		if r.Status != 201 || r.Body["status"] != "received" {
			t.Fatalf("file: %d %s", r.Status, r.Raw)
		}
		id := uint64(r.Body["id"].(float64))
		other, _ := login(t, h, "dev:bystander")
		if r := call(t, h, "GET", fmt.Sprintf("/api/mp/complaints/%d", id), other, nil); r.Status != 404 {
			t.Fatalf("another patient's complaint: %d", r.Status)
		}
		step := func(token string, body map[string]any) response {
			return call(t, h, "POST", fmt.Sprintf("/api/admin/complaints/%d/steps", id), token, body)
		}
		if r := step(mkt, map[string]any{"to": "proposed"}); r.Status != 409 {
			t.Fatalf("skipping steps: %d", r.Status)
		}
		if r := step(mkt, map[string]any{"to": "assigned"}); r.Status != 400 {
			t.Fatalf("assign without department: %d", r.Status)
		}
		var mktID uint64
		a.DB.Gorm().Model(&model.Staff{}).Where("username = ?", "kefu").Pluck("id", &mktID)
		a.DB.Gorm().Model(&model.Staff{}).Where("id = ?", mktID).Update("name", "客服小李") // KPI shows display names
		for _, b := range []map[string]any{
			{"to": "assigned", "department": "前台", "assignee_id": mktID},
			{"to": "investigating", "note": "调取监控"},
			{"to": "proposed", "resolution": "对当事员工培训并向患者致歉"},
		} {
			if r := step(mkt, b); r.Status != 200 {
				t.Fatalf("%v: %d %s", b["to"], r.Status, r.Raw)
			}
		}
		if r := step(mkt, map[string]any{"to": "approved"}); r.Status != 403 {
			t.Fatalf("marketing approves: %d", r.Status)
		}
		if r := step(admin, map[string]any{"to": "approved"}); r.Status != 200 {
			t.Fatalf("approve: %d %s", r.Status, r.Raw)
		}
		if r := step(mkt, map[string]any{"to": "replied", "reply": "非常抱歉给您带来不便，我们已对相关员工进行培训。"}); r.Status != 200 {
			t.Fatalf("reply: %d %s", r.Status, r.Raw)
		}
		var reply int64
		a.DB.Gorm().Model(&model.Notification{}).Where("patient_id = ? AND reason = ?", pid, notify.ReasonComplaintReply).Count(&reply)
		if reply != 1 {
			t.Fatalf("reply notices: %d", reply)
		}
		if r := call(t, h, "POST", fmt.Sprintf("/api/mp/complaints/%d/rate", id), tok, map[string]any{"rating": 4}); r.Status != 200 || r.Body["status"] != "rated" || r.Body["rating"] != float64(4) {
			t.Fatalf("rate: %d %s", r.Status, r.Raw)
		}
		if r := call(t, h, "POST", fmt.Sprintf("/api/mp/complaints/%d/rate", id), tok, map[string]any{"rating": 1}); r.Status != 409 {
			t.Fatalf("rate twice: %d", r.Status)
		}
		d := call(t, h, "GET", fmt.Sprintf("/api/admin/complaints/%d", id), mkt, nil)
		steps := d.Body["steps"].([]any)
		if d.Body["status"] != "rated" || len(steps) != 7 || steps[4].(map[string]any)["by"].(float64) == 0 {
			t.Fatalf("staff steps: %s", d.Raw)
		}
		// The patient sees status changes, the reply and times, nothing of
		// the staff's internal handling.
		d = call(t, h, "GET", fmt.Sprintf("/api/mp/complaints/%d", id), tok, nil)
		steps = d.Body["steps"].([]any)
		if d.Status != 200 || len(steps) != 7 || steps[6].(map[string]any)["status"] != "rated" || d.Body["reply"] != "非常抱歉给您带来不便，我们已对相关员工进行培训。" {
			t.Fatalf("patient steps: %s", d.Raw)
		}
		for _, leak := range []string{"调取监控", "对当事员工培训并向患者致歉", `"by"`, "assignee", "note", "department", "resolution"} {
			if strings.Contains(string(d.Raw), leak) {
				t.Errorf("the patient's view of the complaint shows %q: %s", leak, d.Raw)
			}
		}
		for _, r := range call(t, h, "GET", "/api/mp/complaints", tok, nil).Body["items"].([]any) {
			if _, leaks := r.(map[string]any)["assignee_id"]; leaks {
				t.Errorf("the patient's complaint list shows the assignee: %v", r)
			}
		}
		// Overdue: a new complaint whose first step is late.
		r = call(t, h, "POST", "/api/mp/complaints", tok, map[string]any{"category": "environment", "content": "候诊区太冷了，空调开得太低"})
		a.DB.Gorm().Model(&model.Complaint{}).Where("id = ?", uint64(r.Body["id"].(float64))).Update("step_due_at", time.Now().Add(-time.Hour))
		od := call(t, h, "GET", "/api/admin/complaints?overdue=true", mkt, nil).Body["items"].([]any)
		if len(od) != 1 || od[0].(map[string]any)["overdue"] != true {
			t.Fatalf("overdue: %v", od)
		}
		// A follow-up done counts for the staff member.
		a.DB.Gorm().Create(&model.Task{Kind: "follow_up", Role: model.RoleMarketing, PatientID: pid, Status: "open"})
		var task model.Task
		a.DB.Gorm().Where("kind = ?", "follow_up").Take(&task)
		if r := call(t, h, "POST", fmt.Sprintf("/api/admin/tasks/%d/done", task.ID), mkt, nil); r.Status != 200 || r.Body["status"] != "done" || r.Body["done_at"] == nil {
			t.Fatalf("task done: %d", r.Status)
		}
		k := call(t, h, "GET", "/api/admin/kpi", admin, nil)
		var dept, person map[string]any
		for _, it := range k.Body["items"].([]any) {
			row := it.(map[string]any)
			if row["scope"] == "department" && row["name"] == "前台" {
				dept = row
			}
			if row["scope"] == "staff" && row["name"] == "客服小李" {
				person = row
			}
		}
		if dept == nil || dept["complaints"].(float64) != 1 || dept["resolved"].(float64) != 1 || dept["avg_resolution_hours"] == nil {
			t.Fatalf("department KPI: %s", k.Raw)
		}
		if person == nil || person["follow_ups_done"].(float64) != 1 || person["complaints"].(float64) != 1 {
			t.Fatalf("staff KPI: %s", k.Raw)
		}
		csv := call(t, h, "GET", "/api/admin/kpi?format=csv", admin, nil)
		if csv.Status != 200 || !strings.HasPrefix(string(csv.Raw), "\xef\xbb\xbf范围,名称,投诉数") || !strings.Contains(string(csv.Raw), "科室,前台,1,1,") {
			t.Fatalf("csv: %q", csv.Raw)
		}
		// The same table as a workbook, numbers as numbers.
		x := call(t, h, "GET", "/api/admin/kpi?format=xlsx", admin, nil)
		if x.Status != 200 {
			t.Fatalf("xlsx: %d %s", x.Status, x.Raw)
		}
		wb, err := excelize.OpenReader(bytes.NewReader(x.Raw))
		if err != nil {
			t.Fatalf("xlsx: %v", err)
		}
		sheetRows, err := wb.GetRows(wb.GetSheetList()[0])
		if err != nil || len(sheetRows) < 2 || sheetRows[0][2] != "投诉数" {
			t.Fatalf("xlsx rows: %q %v", sheetRows, err)
		}
		found := false
		for i, r := range sheetRows {
			if len(r) > 3 && r[0] == "科室" && r[1] == "前台" {
				cell, _ := excelize.CoordinatesToCellName(3, i+1)
				typ, _ := wb.GetCellType(wb.GetSheetList()[0], cell)
				// a number cell: no type attribute, or "n"
				found = r[2] == "1" && r[3] == "1" && (typ == excelize.CellTypeUnset || typ == excelize.CellTypeNumber)
			}
		}
		if !found {
			t.Fatalf("xlsx: the front desk's row is missing or its counts are not numbers: %q", sheetRows)
		}
		if r := call(t, h, "GET", "/api/admin/kpi", mkt, nil); r.Status != 403 {
			t.Fatalf("KPI for marketing: %d", r.Status)
		}
	})
}

// Staff read complaints newest first a page at a time.
func TestComplaintsPage(t *testing.T) {
	a := newApp(t, "sqlite", nil)
	h := a.Router
	admin := staffLogin(t, h, app.DemoAdminUser, app.DemoAdminPassword)
	tok, _ := login(t, h, "dev:pages")
	var filed []float64
	for i := 0; i < 3; i++ {
		r := call(t, h, "POST", "/api/mp/complaints", tok, map[string]any{"category": "environment", "content": fmt.Sprintf("候诊区太拥挤了，第 %d 次反映这个问题", i+1)})
		filed = append(filed, r.Body["id"].(float64))
	}
	first := call(t, h, "GET", "/api/admin/complaints?limit=2", admin, nil)
	items := first.Body["items"].([]any)
	if len(items) != 2 || items[0].(map[string]any)["id"] != filed[2] || first.Body["next_cursor"] == "" {
		t.Fatalf("first page: %s", first.Raw)
	}
	second := call(t, h, "GET", "/api/admin/complaints?limit=2&cursor="+first.Body["next_cursor"].(string), admin, nil)
	if items := second.Body["items"].([]any); len(items) != 1 || items[0].(map[string]any)["id"] != filed[0] || second.Body["next_cursor"] != "" {
		t.Fatalf("second page: %s", second.Raw)
	}
}
