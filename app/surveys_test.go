package app_test

import (
	"fmt"
	"testing"
	"time"

	"careloop/app"
	"careloop/model"
)

// completeCheckup books today's slot (as if two days ago) and completes it.
func completeCheckup(t *testing.T, a *app.App, pid uint64, start string, desk string) uint64 {
	t.Helper()
	b := bookToday(t, a, pid, start)
	call(t, a.Router, "POST", fmt.Sprintf("/api/admin/bookings/%d/check-in", b.ID), desk, nil)
	if r := call(t, a.Router, "POST", fmt.Sprintf("/api/admin/bookings/%d/complete", b.ID), desk, nil); r.Status != 200 {
		t.Fatalf("complete: %d %s", r.Status, r.Raw)
	}
	return b.ID
}

func TestSurveys(t *testing.T) {
	forEachBackend(t, nil, func(t *testing.T, a *app.App) {
		h := a.Router
		admin := staffLogin(t, h, app.DemoAdminUser, app.DemoAdminPassword)
		desk := newStaff(t, a, admin, "desk", "frontdesk")
		mkt := newStaff(t, a, admin, "mkt", "marketing")
		tok, pid := login(t, h, "dev:respondent")
		completeCheckup(t, a, pid, "05:00", desk)
		inv := call(t, h, "GET", "/api/mp/surveys/invites", tok, nil).Body["items"].([]any)
		if len(inv) != 1 {
			t.Fatalf("invitations after a checkup: %v", inv)
		}
		id := uint64(inv[0].(map[string]any)["id"].(float64))
		var notice model.Notification
		if err := a.DB.Gorm().Where("patient_id = ? AND reason = ?", pid, "survey_invite").Take(&notice).Error; err != nil || notice.Page != fmt.Sprintf("pages/survey/answer?invite=%d", id) {
			t.Fatalf("invitation notice: %+v %v", notice, err)
		}
		q := call(t, h, "GET", fmt.Sprintf("/api/mp/surveys/invites/%d", id), tok, nil)
		if len(q.Body["questions"].([]any)) != 4 {
			t.Fatalf("questions: %s", q.Raw)
		}
		other, _ := login(t, h, "dev:stranger")
		if r := call(t, h, "POST", fmt.Sprintf("/api/mp/surveys/invites/%d/answer", id), other, map[string]any{"answers": map[string]any{"overall": 5, "nps": 10}}); r.Status != 404 {
			t.Fatalf("another patient answers: %d", r.Status)
		}
		if r := call(t, h, "POST", fmt.Sprintf("/api/mp/surveys/invites/%d/answer", id), tok, map[string]any{"answers": map[string]any{"overall": 7, "nps": 10}}); r.Status != 422 {
			t.Fatalf("rating out of range: %d", r.Status)
		}
		if r := call(t, h, "POST", fmt.Sprintf("/api/mp/surveys/invites/%d/answer", id), tok, map[string]any{"answers": map[string]any{"nps": 10}}); r.Status != 422 {
			t.Fatalf("required question missing: %d", r.Status)
		}
		before := balance(a, pid)
		// Ten answers race: one counts.
		rs := race(10, func(int) response {
			return call(t, h, "POST", fmt.Sprintf("/api/mp/surveys/invites/%d/answer", id), tok,
				map[string]any{"answers": map[string]any{"overall": 2, "nps": 3, "best": []string{"采血"}, "comment": "等候时间太长"}})
		})
		if c := countBy(rs); c["201"] != 1 || c["409 already_answered"] != 9 {
			t.Fatalf("answers raced: %v", c)
		}
		if got := balance(a, pid) - before; got != 50 {
			t.Fatalf("survey points: %d", got)
		}
		tasks := call(t, h, "GET", "/api/admin/tasks", mkt, nil).Body["items"].([]any)
		if len(tasks) != 1 || tasks[0].(map[string]any)["kind"] != "follow_up" {
			t.Fatalf("a low score opens a follow-up: %v", tasks)
		}
		// A second patient, delighted.
		tok2, pid2 := login(t, h, "dev:fan")
		completeCheckup(t, a, pid2, "05:10", desk)
		inv2 := uint64(call(t, h, "GET", "/api/mp/surveys/invites", tok2, nil).Body["items"].([]any)[0].(map[string]any)["id"].(float64))
		call(t, h, "POST", fmt.Sprintf("/api/mp/surveys/invites/%d/answer", inv2), tok2, map[string]any{"answers": map[string]any{"overall": 5, "nps": 10}})
		res := call(t, h, "GET", "/api/admin/surveys/results?code=checkup", mkt, nil)
		// One detractor (3) and one promoter (10): NPS 0; CSAT (2+5)/2.
		if res.Body["responses"].(float64) != 2 || res.Body["nps"].(float64) != 0 || res.Body["csat"].(float64) != 3.5 {
			t.Fatalf("results: %s", res.Raw)
		}
		// The same by month: one answer moved to last month splits them.
		now := time.Now().In(model.Shanghai)
		lastMonth := time.Date(now.Year(), now.Month(), 1, 12, 0, 0, 0, model.Shanghai).AddDate(0, 0, -1)
		a.DB.Gorm().Model(&model.SurveyResponse{}).Where("patient_id = ?", pid2).Update("created_at", lastMonth.UTC())
		res = call(t, h, "GET", "/api/admin/surveys/results?code=checkup", mkt, nil)
		months := res.Body["by_month"].([]any)
		if len(months) != 2 || months[0].(map[string]any)["nps"].(float64) != 100 || months[1].(map[string]any)["csat"].(float64) != 2 ||
			months[0].(map[string]any)["month"] != lastMonth.Format("2006-01") {
			t.Fatalf("by month: %s", res.Raw)
		}
		// Expired invitations cannot be answered.
		tok3, pid3 := login(t, h, "dev:late")
		completeCheckup(t, a, pid3, "05:20", desk)
		a.DB.Gorm().Model(&model.SurveyInvite{}).Where("patient_id = ?", pid3).Update("expires_at", time.Now().Add(-time.Minute))
		var inv3 model.SurveyInvite
		a.DB.Gorm().Where("patient_id = ?", pid3).Take(&inv3)
		if r := call(t, h, "POST", fmt.Sprintf("/api/mp/surveys/invites/%d/answer", inv3.ID), tok3, map[string]any{"answers": map[string]any{"overall": 4, "nps": 8}}); r.Status != 422 || r.ErrCode() != "survey_expired" {
			t.Fatalf("expired: %d %s", r.Status, r.Raw)
		}
		// A new version replaces the active one; old answers keep theirs.
		def := map[string]any{"code": "checkup", "name": "体检满意度调查（新版）", "trigger": "after_checkup",
			"questions": []map[string]any{{"id": "overall", "kind": "rating", "title": "总体满意度", "required": true}}}
		if r := call(t, h, "POST", "/api/admin/surveys", mkt, def); r.Status != 201 || r.Body["version"].(float64) != 2 {
			t.Fatalf("new version: %d %s", r.Status, r.Raw)
		}
		var active int64
		a.DB.Gorm().Model(&model.Survey{}).Where("active = ? AND code = ?", true, "checkup").Count(&active)
		if active != 1 {
			t.Fatalf("active surveys: %d", active)
		}
	})
}
