package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"careloop/app"
	"careloop/model"
	"careloop/testenv"
)

// segPatient is a patient made for segment tests.
type segPatient struct {
	name, gender, birth, region string
}

func makeSegPatient(t *testing.T, a *app.App, p segPatient) uint64 {
	t.Helper()
	row := model.Patient{Name: p.name, Gender: p.gender, RegionCode: p.region, Source: "test"}
	if p.birth != "" {
		d, _ := time.Parse(time.DateOnly, p.birth)
		row.BirthDate = &d
	}
	if err := a.DB.Gorm().Create(&row).Error; err != nil {
		t.Fatal(err)
	}
	return row.ID
}

// cond is one condition of the language.
func cond(field, op string, value any) map[string]any {
	return map[string]any{"field": field, "op": op, "value": value}
}

// all is one group whose conditions must all hold.
func all(cs ...map[string]any) map[string]any {
	return map[string]any{"match": "all", "groups": []any{map[string]any{"match": "all", "conditions": cs}}}
}

// preview answers the ids of the patients a filter matches (all of them:
// the tests keep populations under the sample size) and the count.
func preview(t *testing.T, a *app.App, tok, purpose string, conditions map[string]any) ([]uint64, response) {
	t.Helper()
	r := call(t, a.Router, "POST", "/api/admin/segments/preview", tok, map[string]any{"purpose": purpose, "conditions": conditions})
	if r.Status != 200 {
		return nil, r
	}
	var ids []uint64
	for _, s := range r.Body["sample"].([]any) {
		ids = append(ids, uint64(s.(map[string]any)["id"].(float64)))
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	if int(r.Body["count"].(float64)) != len(ids) && len(ids) < 10 {
		t.Fatalf("count %v but the sample has %d", r.Body["count"], len(ids))
	}
	return ids, r
}

func ids(v ...uint64) []uint64 {
	sort.Slice(v, func(i, j int) bool { return v[i] < v[j] })
	return v
}

// The condition language over profile, tags, points, bookings, follower
// status, subscription credits and RFM tiers: each condition and the
// AND/OR of groups select exactly the patients they say; erased and
// blocked patients never; bad conditions are refused with where and why.
func TestSegmentConditions(t *testing.T) {
	for _, backend := range testenv.Backends() {
		t.Run(backend, func(t *testing.T) {
			a := newIdleApp(t, backend, nil)
			h := a.Router
			db := a.DB.Gorm()
			admin := staffLogin(t, h, app.DemoAdminUser, app.DemoAdminPassword)
			mkt := newStaffOnce(t, a, admin, "mkt", "marketing")
			desk := newStaffOnce(t, a, admin, "desk", "frontdesk")
			// Only these patients exist: the demo data is made for people, not for counting.
			db.Exec("DELETE FROM patients")

			today := time.Now().In(model.Shanghai)
			ageYears := func(n int) string { return today.AddDate(-n, 0, -1).Format(time.DateOnly) }
			pa := makeSegPatient(t, a, segPatient{"张三丰", "female", ageYears(46), "330106"})
			pb := makeSegPatient(t, a, segPatient{"李四", "male", ageYears(31), "110105"})
			pc := makeSegPatient(t, a, segPatient{"王小五", "female", ageYears(26), "330102"})
			gone := makeSegPatient(t, a, segPatient{"已注销", "female", ageYears(46), "330106"})
			blocked := makeSegPatient(t, a, segPatient{"已拉黑", "female", ageYears(46), "330106"})
			now := time.Now()
			db.Model(&model.Patient{}).Where("id = ?", gone).Update("erased_at", now)
			db.Model(&model.Patient{}).Where("id = ?", blocked).Update("blocked_at", now)

			tag := call(t, h, "POST", "/api/admin/tags", mkt, map[string]any{"name": "VIP", "category": "basic"})
			other := call(t, h, "POST", "/api/admin/tags", mkt, map[string]any{"name": "企业团检", "category": "basic"})
			vip, corp := uint64(tag.Body["id"].(float64)), uint64(other.Body["id"].(float64))
			for _, pt := range []model.PatientTag{{PatientID: pa, TagID: vip}, {PatientID: pc, TagID: vip}, {PatientID: pc, TagID: corp}, {PatientID: gone, TagID: vip}} {
				pt.AssignedAt = now
				db.Create(&pt)
			}
			db.Create(&model.Follower{OpenID: "oa-seg-a", PatientID: &pa, Subscribed: true, SubscribedAt: now})
			db.Create(&model.SubscribeCredit{PatientID: pb, TemplateID: "TPL-CARE", Credits: 2})
			db.Create(&model.PointsAccount{PatientID: pc, Balance: 500, Growth: 500})
			completedCheckup(t, a, pa, 400, 80000, 0)
			completedCheckup(t, a, pb, 30, 50000, 0)
			completedCheckup(t, a, pb, 200, 50000, 0)
			completedCheckup(t, a, gone, 400, 80000, 0)
			noShow := model.Booking{Code: "NS0000000001", PatientID: pb, PersonKey: fmt.Sprintf("p:%d", pb), PackageID: 2, SlotID: 1,
				Date: today.AddDate(0, 0, -60).Format(time.DateOnly), Status: model.BookingNoShow, IdempotencyKey: "seg-ns"}
			upcoming := model.Booking{Code: "UP0000000001", PatientID: pc, PersonKey: fmt.Sprintf("p:%d", pc), PackageID: 2, SlotID: 1,
				Date: today.AddDate(0, 0, 3).Format(time.DateOnly), Status: model.BookingBooked, IdempotencyKey: "seg-up"}
			db.Create(&noShow)
			db.Create(&upcoming)

			for name, c := range map[string]struct {
				conditions map[string]any
				want       []uint64
			}{
				"women in Hangzhou":          {all(cond("gender", "eq", "female"), cond("region", "in", []string{"3301"})), ids(pa, pc)},
				"province by its full code":  {all(cond("region", "in", []string{"330000"})), ids(pa, pc)},
				"aged 40 to 50":              {all(cond("age", "between", []int{40, 50})), ids(pa)},
				"under 30":                   {all(cond("age", "lte", 29)), ids(pc)},
				"VIP and not following":      {all(cond("tag", "any", []uint64{vip}), cond("wechat.follower", "eq", false)), ids(pc)},
				"both tags":                  {all(cond("tag", "all", []uint64{vip, corp})), ids(pc)},
				"without VIP":                {all(cond("tag", "none", []uint64{vip})), ids(pb)},
				"a year since the last":      {all(cond("booking.days_since_last", "gte", 365), cond("booking.upcoming", "eq", false)), ids(pa)},
				"two checkups or more":       {all(cond("booking.count", "gte", 2)), ids(pb)},
				"never checked up":           {all(cond("booking.count", "lte", 0)), ids(pc)},
				"a checkup in 90 days":       {map[string]any{"groups": []any{map[string]any{"conditions": []any{map[string]any{"field": "booking.count", "op": "gte", "value": 1, "within_days": 90}}}}}, ids(pb)},
				"missed one":                 {all(cond("booking.no_shows", "gte", 1)), ids(pb)},
				"package 1":                  {all(cond("booking.package", "any", []int{1})), ids(pa, pb)},
				"coming soon":                {all(cond("booking.upcoming", "eq", true)), ids(pc)},
				"holds a credit":             {all(cond("wechat.credit", "has", "TPL-CARE")), ids(pb)},
				"points 400 or more":         {all(cond("points", "gte", 400)), ids(pc)},
				"following":                  {all(cond("wechat.follower", "eq", true)), ids(pa)},
				"no conditions: everyone":    {map[string]any{"match": "all", "groups": []any{}}, ids(pa, pb, pc)},
				"men, or 400 points (OR)":    {map[string]any{"match": "any", "groups": []any{all(cond("gender", "eq", "male"))["groups"].([]any)[0], all(cond("points", "gte", 400))["groups"].([]any)[0]}}, ids(pb, pc)},
				"men or VIP (OR in a group)": {map[string]any{"groups": []any{map[string]any{"match": "any", "conditions": []any{cond("gender", "in", []string{"male"}), cond("tag", "any", []uint64{vip})}}}}, ids(pa, pb, pc)},
			} {
				got, r := preview(t, a, mkt, "marketing", c.conditions)
				if r.Status != 200 || !slices.Equal(got, c.want) {
					t.Errorf("%s: got %v (%d %s), want %v", name, got, r.Status, r.Raw, c.want)
				}
			}
			// Levels are ranges of growth (pc has 500, the others none).
			var levels []model.Level
			db.Order("growth").Find(&levels)
			growth := map[uint64]int64{pa: 0, pb: 0, pc: 500}
			for i, l := range levels {
				var want []uint64
				for id, g := range growth {
					if g >= l.Growth && (i+1 == len(levels) || g < levels[i+1].Growth) {
						want = append(want, id)
					}
				}
				if got, r := preview(t, a, mkt, "marketing", all(cond("level", "in", []uint64{l.ID}))); !slices.Equal(got, ids(want...)) {
					t.Errorf("level %s: %v %s, want %v", l.Name, got, r.Raw, ids(want...))
				}
			}
			// RFM tier of the latest run.
			if got, _ := preview(t, a, mkt, "marketing", all(cond("rfm.tier", "in", []string{"gold", "platinum", "iron", "lead"}))); len(got) != 0 {
				t.Fatalf("tiers before any run: %v", got)
			}
			runRFM(t, a, mkt)
			got, _ := preview(t, a, mkt, "marketing", all(cond("rfm.tier", "in", []string{"gold", "platinum", "iron", "lead"})))
			if !slices.Equal(got, ids(pa, pb)) {
				t.Fatalf("scored patients: %v", got)
			}
			if got, r := preview(t, a, mkt, "marketing", all(cond("rfm.frequency", "gte", 2))); !slices.Equal(got, ids(pb)) {
				t.Fatalf("rfm frequency: %v %s", got, r.Raw)
			}

			// Refusals say where and why.
			for name, c := range map[string]struct {
				purpose    string
				conditions map[string]any
				status     int
				code       string
			}{
				"unknown field":      {"marketing", all(cond("income", "gte", 1)), 422, "invalid_condition"},
				"wrong operator":     {"marketing", all(cond("gender", "gte", 1)), 422, "invalid_condition"},
				"bad value":          {"marketing", all(cond("age", "between", []int{50, 40})), 422, "invalid_condition"},
				"bad region":         {"marketing", all(cond("region", "in", []string{"杭州"})), 422, "invalid_condition"},
				"unknown channel":    {"marketing", all(cond("channel", "in", []int{999})), 422, "invalid_condition"},
				"bad purpose":        {"sales", all(cond("gender", "eq", "male")), 400, "invalid_segment"},
				"report in mkt":      {"marketing", all(cond("report.item", "any", []string{"白细胞计数"})), 422, "health_data_not_allowed"},
				"archive in mkt":     {"marketing", all(cond("archive.past_history", "any", []string{"高血压"})), 422, "health_data_not_allowed"},
				"health by mkt role": {"care", all(cond("report.abnormal", "eq", true)), 403, "health_segment"},
			} {
				r := call(t, h, "POST", "/api/admin/segments/preview", mkt, map[string]any{"purpose": c.purpose, "conditions": c.conditions})
				if r.Status != c.status || r.ErrCode() != c.code {
					t.Errorf("%s: %d %s", name, r.Status, r.Raw)
				}
			}
			bad := call(t, h, "POST", "/api/admin/segments/preview", mkt, map[string]any{"purpose": "marketing",
				"conditions": map[string]any{"groups": []any{all(cond("gender", "eq", "male"))["groups"].([]any)[0], all(cond("gender", "eq", "male"), cond("age", "gte", "old"))["groups"].([]any)[0]}}})
			e, _ := bad.Body["error"].(map[string]any)
			if d, _ := e["details"].(map[string]any); d["group"] != 1.0 || d["index"] != 1.0 || d["field"] != "age" || !strings.Contains(fmt.Sprint(e["message"]), "第 2 组第 2 个条件") {
				t.Fatalf("where the bad condition is: %s", bad.Raw)
			}
			if r := call(t, h, "POST", "/api/admin/segments/preview", desk, map[string]any{"purpose": "marketing", "conditions": all()}); r.Status != 403 {
				t.Fatalf("the front desk builds segments: %d", r.Status)
			}

			// Saved, counted, listed a page at a time, exported masked and audited.
			seg := call(t, h, "POST", "/api/admin/segments", mkt, map[string]any{"name": "杭州女性", "purpose": "marketing",
				"conditions": all(cond("gender", "eq", "female"), cond("region", "in", []string{"3301"}))})
			if seg.Status != 201 || seg.Body["health"] != false {
				t.Fatalf("create: %d %s", seg.Status, seg.Raw)
			}
			if again := call(t, h, "POST", "/api/admin/segments", mkt, map[string]any{"name": "杭州女性", "purpose": "marketing", "conditions": all(cond("gender", "eq", "male"))}); again.Status != 409 {
				t.Fatalf("same name: %d", again.Status)
			}
			sid := uint64(seg.Body["id"].(float64))
			if g := call(t, h, "GET", fmt.Sprintf("/api/admin/segments/%d", sid), mkt, nil); g.Body["count"] != 2.0 || g.Body["conditions"].(map[string]any)["groups"] == nil {
				t.Fatalf("get: %s", g.Raw)
			}
			p1 := call(t, h, "GET", fmt.Sprintf("/api/admin/segments/%d/patients?limit=1", sid), mkt, nil)
			items := p1.Body["items"].([]any)
			if len(items) != 1 || p1.Body["next_cursor"] == "" {
				t.Fatalf("page 1: %s", p1.Raw)
			}
			p2 := call(t, h, "GET", fmt.Sprintf("/api/admin/segments/%d/patients?limit=1&cursor=%s", sid, p1.Body["next_cursor"]), mkt, nil)
			if it := p2.Body["items"].([]any); len(it) != 1 || it[0].(map[string]any)["id"] == items[0].(map[string]any)["id"] {
				t.Fatalf("page 2: %s", p2.Raw)
			}
			rec := httptest.NewRecorder()
			req := httptest.NewRequest("GET", fmt.Sprintf("/api/admin/segments/%d/export", sid), nil)
			req.Header.Set("Authorization", "Bearer "+mkt)
			h.ServeHTTP(rec, req)
			csvText := rec.Body.String()
			if rec.Code != 200 || !strings.Contains(csvText, "张*丰") || !strings.Contains(csvText, "王*五") || strings.Contains(csvText, "张三丰") || strings.Contains(csvText, "李四") {
				t.Fatalf("export: %d %s", rec.Code, csvText)
			}
			var audits int64
			db.Model(&model.AuditLog{}).Where("action = ? AND detail LIKE ?", "segment.export", fmt.Sprintf("export segment %d %%: 2 patients", sid)).Count(&audits)
			if audits != 1 {
				t.Fatalf("export audited %d times", audits)
			}
			upd := call(t, h, "PUT", fmt.Sprintf("/api/admin/segments/%d", sid), mkt, map[string]any{"name": "杭州女性VIP",
				"conditions": all(cond("gender", "eq", "female"), cond("region", "in", []string{"3301"}), cond("wechat.follower", "eq", true))})
			if upd.Status != 200 || upd.Body["name"] != "杭州女性VIP" || upd.Body["purpose"] != "marketing" {
				t.Fatalf("update: %d %s", upd.Status, upd.Raw)
			}
			if g := call(t, h, "GET", fmt.Sprintf("/api/admin/segments/%d", sid), mkt, nil); g.Body["count"] != 1.0 {
				t.Fatalf("count after update: %s", g.Raw)
			}
			if l := call(t, h, "GET", "/api/admin/segments", mkt, nil); len(l.Body["items"].([]any)) != 1 {
				t.Fatalf("list: %s", l.Raw)
			}
			if d := call(t, h, "DELETE", fmt.Sprintf("/api/admin/segments/%d", sid), mkt, nil); d.Status != 204 {
				t.Fatalf("delete: %d", d.Status)
			}
			if g := call(t, h, "GET", fmt.Sprintf("/api/admin/segments/%d", sid), mkt, nil); g.Status != 404 {
				t.Fatalf("deleted segment: %d", g.Status)
			}
			if f := call(t, h, "GET", "/api/admin/segments/fields", mkt, nil); len(f.Body["items"].([]any)) < 20 {
				t.Fatalf("fields: %s", f.Raw)
			}
		})
	}
}

// Care segments on health data: abnormal report items (by name or code,
// within days) and the health archive; only doctors (and admins) build,
// see and use them, every use is audited, and they are never mirrored to
// WeChat. The marks behind them hold keyed hashes, not the names.
func TestCareSegmentsOnHealthData(t *testing.T) {
	forEachBackend(t, nil, func(t *testing.T, a *app.App) {
		h := a.Router
		db := a.DB.Gorm()
		admin := staffLogin(t, h, app.DemoAdminUser, app.DemoAdminPassword)
		doc := newStaffOnce(t, a, admin, "doc", "doctor")
		mkt := newStaffOnce(t, a, admin, "mkt", "marketing")

		// A patient's report with a high white cell count, another's normal one.
		his := "HIS-SEG-1"
		sick := model.Patient{Name: "赵异常", HISID: &his, Source: "test"}
		db.Create(&sick)
		his2 := "HIS-SEG-2"
		well := model.Patient{Name: "钱正常", HISID: &his2, Source: "test"}
		db.Create(&well)
		exam := time.Now().In(model.Shanghai).AddDate(0, 0, -3).Format(time.DateOnly)
		report := func(ext, hisID, abnormal string) {
			body, _ := json.Marshal(map[string]any{"external_id": ext, "his_patient_id": hisID, "exam_date": exam, "doctor": "张医生",
				"sections": []map[string]any{{"name": "血常规", "items": []map[string]any{
					{"code": "WBC", "name": "白细胞计数", "value": "11.2", "unit": "10^9/L", "reference_range": "3.5-9.5", "abnormal": abnormal},
				}}}})
			if r := ingest(t, h, "peis", peisSecret, time.Now(), body); r.Status != 201 || r.Body["matched"] != true {
				t.Fatalf("ingest: %d %s", r.Status, r.Raw)
			}
		}
		report("SEG-R1", his, "high")
		report("SEG-R2", his2, "")
		// A patient with high blood pressure in their archive.
		tok, hyper := login(t, h, "dev:seg-hyper")
		call(t, h, "POST", "/api/mp/me/consents", tok, map[string]any{"kind": "health_data", "version": "2026-11", "granted": true})
		if r := call(t, h, "PUT", "/api/mp/me/health", tok, map[string]any{"past_history": []string{"高血压"}, "allergies": []string{"青霉素"}}); r.Status != 200 {
			t.Fatalf("archive: %d %s", r.Status, r.Raw)
		}

		for name, c := range map[string]struct {
			conditions map[string]any
			want       []uint64
		}{
			"abnormal WBC by name":    {all(cond("report.item", "any", []string{"白细胞计数"})), ids(sick.ID)},
			"abnormal WBC by code":    {all(cond("report.item", "any", []string{"wbc"})), ids(sick.ID)},
			"any abnormal finding":    {all(cond("report.abnormal", "eq", true)), ids(sick.ID)},
			"within a week":           {map[string]any{"groups": []any{map[string]any{"conditions": []any{map[string]any{"field": "report.item", "op": "any", "value": []string{"白细胞计数"}, "within_days": 7}}}}}, ids(sick.ID)},
			"within a day: too early": {map[string]any{"groups": []any{map[string]any{"conditions": []any{map[string]any{"field": "report.item", "op": "any", "value": []string{"白细胞计数"}, "within_days": 1}}}}}, nil},
			"hypertension":            {all(cond("archive.past_history", "any", []string{"高血压"})), ids(hyper)},
			"penicillin allergy":      {all(cond("archive.allergy", "any", []string{" 青霉素 "})), ids(hyper)},
		} {
			got, r := preview(t, a, doc, "care", c.conditions)
			if r.Status != 200 || !slices.Equal(got, c.want) {
				t.Errorf("%s: %v %d %s, want %v", name, got, r.Status, r.Raw, c.want)
			}
		}
		// The names are not stored.
		var marks []model.HealthMark
		db.Find(&marks)
		if len(marks) < 4 {
			t.Fatalf("%d marks", len(marks))
		}
		for _, m := range marks {
			if strings.Contains(m.Hash, "白细胞") || strings.Contains(m.Hash, "高血压") || len(m.Hash) != 64 {
				t.Fatalf("a mark stores its name: %+v", m)
			}
		}
		// The archive changes: the marks follow.
		call(t, h, "PUT", "/api/mp/me/health", tok, map[string]any{"past_history": []string{"糖尿病"}})
		if got, _ := preview(t, a, doc, "care", all(cond("archive.past_history", "any", []string{"高血压"}))); len(got) != 0 {
			t.Fatalf("stale archive mark: %v", got)
		}

		var before int64
		db.Model(&model.AuditLog{}).Where("action = ?", "segment.health_use").Count(&before)
		seg := call(t, h, "POST", "/api/admin/segments", doc, map[string]any{"name": "白细胞异常复查", "purpose": "care",
			"conditions": all(cond("report.item", "any", []string{"白细胞计数"}))})
		if seg.Status != 201 || seg.Body["health"] != true {
			t.Fatalf("care segment: %d %s", seg.Status, seg.Raw)
		}
		sid := uint64(seg.Body["id"].(float64))
		if m := call(t, h, "GET", fmt.Sprintf("/api/admin/segments/%d/patients", sid), doc, nil); len(m.Body["items"].([]any)) != 1 {
			t.Fatalf("members: %s", m.Raw)
		}
		var after int64
		db.Model(&model.AuditLog{}).Where("action = ?", "segment.health_use").Count(&after)
		if after-before < 1 {
			t.Fatalf("the use of a health segment was not audited")
		}
		// Marketing neither sees nor uses it.
		if g := call(t, h, "GET", fmt.Sprintf("/api/admin/segments/%d", sid), mkt, nil); g.Status != 403 || g.ErrCode() != "health_segment" {
			t.Fatalf("marketing reads a health segment: %d %s", g.Status, g.Raw)
		}
		if l := call(t, h, "GET", "/api/admin/segments", mkt, nil); len(l.Body["items"].([]any)) != 0 {
			t.Fatalf("marketing lists a health segment: %s", l.Raw)
		}
		if r := call(t, h, "PUT", fmt.Sprintf("/api/admin/segments/%d/mirror", sid), admin, map[string]any{"on": true}); r.Status != 422 || r.ErrCode() != "health_data_not_allowed" {
			t.Fatalf("health segment mirrored to WeChat: %d %s", r.Status, r.Raw)
		}
		// A rebuild (as after a key rotation) finds the same patients.
		db.Where("1 = 1").Delete(&model.HealthMark{})
		db.Where("`key` = ?", "health_marks.built").Delete(&model.Setting{})
		a.ComputedTags.Wake()
		eventually(t, 10*time.Second, "marks rebuilt", func() bool {
			got, _ := preview(t, a, doc, "care", all(cond("report.item", "any", []string{"白细胞计数"})))
			return slices.Equal(got, ids(sick.ID))
		})
	})
}

// The model and predictive tags are computed, not typed: the RFM tier, "due
// for the annual re-check" and "at risk of lapsing" land on the right
// patients, say how and when they were computed, follow the patients when
// they change, and cannot be put on or taken off by hand. A marketing
// segment mirrored as a WeChat tag reaches its followers at WeChat.
func TestComputedTagsAndMirroredSegments(t *testing.T) {
	for _, backend := range testenv.Backends() {
		t.Run(backend, func(t *testing.T) {
			a := newIdleApp(t, backend, nil)
			h := a.Router
			db := a.DB.Gorm()
			ctx := context.Background()
			admin := staffLogin(t, h, app.DemoAdminUser, app.DemoAdminPassword)
			mkt := newStaffOnce(t, a, admin, "mkt", "marketing")
			due, lapsing, regular, once := newPatient(t, a, "到期"), newPatient(t, a, "流失"), newPatient(t, a, "常客"), newPatient(t, a, "一次")
			completedCheckup(t, a, due, 400, 80000, 0)
			for _, d := range []int{1000, 800, 600} { // every 200 days, the last 600 days ago
				completedCheckup(t, a, lapsing, d, 60000, 0)
			}
			completedCheckup(t, a, regular, 100, 90000, 0)
			completedCheckup(t, a, regular, 460, 90000, 0)
			completedCheckup(t, a, once, 300, 50000, 0)
			runRFM(t, a, mkt)
			if err := a.ComputedTags.Compute(ctx); err != nil {
				t.Fatal(err)
			}
			l := call(t, h, "GET", "/api/admin/tags/computed", mkt, nil)
			byKey := map[string]map[string]any{}
			for _, it := range l.Body["items"].([]any) {
				m := it.(map[string]any)
				byKey[m["key"].(string)] = m
				if m["rule"] == "" || m["computed_at"] == nil {
					t.Fatalf("a computed tag does not say how or when: %v", m)
				}
			}
			if len(byKey) != 7 || byKey["due_recheck"]["kind"] != "predictive" || byKey["rfm:gold"]["kind"] != "model" || byKey["lapsing"]["name"] != "预测·流失风险" {
				t.Fatalf("computed tags: %s", l.Raw)
			}
			holders := func(key string) []uint64 {
				var out []uint64
				db.Model(&model.PatientTag{}).Where("tag_id = ? AND patient_id IN ?", uint64(byKey[key]["tag_id"].(float64)), []uint64{due, lapsing, regular, once}).
					Order("patient_id").Pluck("patient_id", &out)
				return out
			}
			if got := holders("due_recheck"); !slices.Equal(got, ids(due, lapsing)) {
				t.Fatalf("due for the re-check: %v, want %v", got, ids(due, lapsing))
			}
			if got := holders("lapsing"); !slices.Equal(got, ids(lapsing)) {
				t.Fatalf("at risk of lapsing: %v, want %v", got, ids(lapsing))
			}
			var tiers []model.RFMScore
			db.Where("patient_id IN ?", []uint64{due, lapsing, regular, once}).Find(&tiers)
			for _, sc := range tiers {
				if got := holders("rfm:" + sc.Tier); !slices.Contains(got, sc.PatientID) {
					t.Fatalf("patient %d of tier %s lacks its tag", sc.PatientID, sc.Tier)
				}
			}
			// Computed tags are not typed.
			dueTag := uint64(byKey["due_recheck"]["tag_id"].(float64))
			if r := call(t, h, "POST", fmt.Sprintf("/api/admin/patients/%d/tags", regular), mkt, map[string]any{"tag_id": dueTag}); r.Status != 422 || r.ErrCode() != "computed_tag" {
				t.Fatalf("typed a computed tag: %d %s", r.Status, r.Raw)
			}
			if r := call(t, h, "DELETE", fmt.Sprintf("/api/admin/patients/%d/tags/%d", due, dueTag), mkt, nil); r.Status != 422 {
				t.Fatalf("took a computed tag off: %d %s", r.Status, r.Raw)
			}
			if r := call(t, h, "DELETE", fmt.Sprintf("/api/admin/tags/%d", dueTag), mkt, nil); r.Status != 422 {
				t.Fatalf("deleted a computed tag: %d %s", r.Status, r.Raw)
			}
			// The due patient books: no longer due at the next computation.
			db.Create(&model.Booking{Code: "DUE000000001", PatientID: due, PersonKey: fmt.Sprintf("p:%d", due), PackageID: 1, SlotID: 1,
				Date: time.Now().In(model.Shanghai).AddDate(0, 0, 5).Format(time.DateOnly), Status: model.BookingBooked, IdempotencyKey: "due-book"})
			if r := call(t, h, "POST", "/api/admin/tags/computed/refresh", mkt, nil); r.Status != 202 {
				t.Fatalf("refresh: %d %s", r.Status, r.Raw)
			}
			if err := a.ComputedTags.Compute(ctx); err != nil {
				t.Fatal(err)
			}
			if got := holders("due_recheck"); !slices.Equal(got, ids(lapsing)) {
				t.Fatalf("after booking, due: %v", got)
			}
			// Gold patients due for the re-check, as a segment over computed tags.
			if got, r := preview(t, a, mkt, "marketing", all(cond("tag", "any", []uint64{dueTag}), cond("rfm.tier", "in", []string{"lead", "iron", "gold", "platinum"}))); !slices.Equal(got, ids(lapsing)) {
				t.Fatalf("segment over computed tags: %v %s", got, r.Raw)
			}

			// A segment mirrored as a WeChat tag.
			pids, opens := followingPatients(t, a, "mirror", 3, 0, true)
			db.Model(&model.Patient{}).Where("id IN ?", pids[:2]).Update("gender", "female")
			seg := call(t, h, "POST", "/api/admin/segments", mkt, map[string]any{"name": "关注的女性", "purpose": "marketing",
				"conditions": all(cond("gender", "eq", "female"), cond("wechat.follower", "eq", true))})
			sid := uint64(seg.Body["id"].(float64))
			m := call(t, h, "PUT", fmt.Sprintf("/api/admin/segments/%d/mirror", sid), mkt, map[string]any{"on": true})
			if m.Status != 200 || m.Body["mirror_tag_id"] == nil {
				t.Fatalf("mirror: %d %s", m.Status, m.Raw)
			}
			if err := a.WxTags.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			var wx model.WxTag
			db.Where("tag_id = ?", uint64(m.Body["mirror_tag_id"].(float64))).Take(&wx)
			got := a.Sandbox.TaggedWith(wx.WxTagID)
			sort.Strings(got)
			if !slices.Equal(got, []string{opens[0], opens[1]}) {
				t.Fatalf("WeChat holds %v under the segment's tag", got)
			}
			// The third becomes a woman: the next computation and sync tag her.
			db.Model(&model.Patient{}).Where("id = ?", pids[2]).Update("gender", "female")
			db.Model(&model.ComputedTag{}).Where("1 = 1").Update("computed_at", nil)
			if err := a.ComputedTags.Compute(ctx); err != nil {
				t.Fatal(err)
			}
			if err := a.WxTags.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			if got := a.Sandbox.TaggedWith(wx.WxTagID); len(got) != 3 {
				t.Fatalf("after the change WeChat holds %v", got)
			}
			if d := call(t, h, "DELETE", fmt.Sprintf("/api/admin/segments/%d", sid), mkt, nil); d.Status != 409 {
				t.Fatalf("deleted a mirrored segment: %d", d.Status)
			}
			if off := call(t, h, "PUT", fmt.Sprintf("/api/admin/segments/%d/mirror", sid), mkt, map[string]any{"on": false}); off.Status != 200 || off.Body["mirror_tag_id"] != nil {
				t.Fatalf("stop mirroring: %d %s", off.Status, off.Raw)
			}
			if got := a.Sandbox.TaggedWith(wx.WxTagID); len(got) != 0 {
				t.Fatalf("the WeChat tag outlived the mirror: %v", got)
			}
		})
	}
}

// The booking facts segments count on follow the bookings: a booking made
// is "to come" at the next count, and no longer once cancelled.
func TestSegmentBookingFactsFollowBookings(t *testing.T) {
	forEachIdleBackend(t, nil, func(t *testing.T, a *app.App) {
		h := a.Router
		admin := staffLogin(t, h, app.DemoAdminUser, app.DemoAdminPassword)
		mkt := newStaffOnce(t, a, admin, "mkt", "marketing")
		tok, pid := login(t, h, "dev:visits")
		upcoming := all(cond("booking.upcoming", "eq", true))
		if got, _ := preview(t, a, mkt, "marketing", upcoming); slices.Contains(got, pid) {
			t.Fatalf("a booking to come before booking")
		}
		sl := testSlot(t, a, "06:20", 5)
		b := bookCall(t, h, tok, "visits-1", map[string]any{"package_id": anyPackage(t, a).ID, "slot_id": sl.ID})
		if b.Status != 201 {
			t.Fatalf("book: %d %s", b.Status, b.Raw)
		}
		if got, _ := preview(t, a, mkt, "marketing", upcoming); !slices.Contains(got, pid) {
			t.Fatalf("the booking is not seen: %v", got)
		}
		if r := call(t, h, "POST", fmt.Sprintf("/api/mp/bookings/%v/cancel", b.Body["id"]), tok, nil); r.Status != 200 {
			t.Fatalf("cancel: %d %s", r.Status, r.Raw)
		}
		if got, _ := preview(t, a, mkt, "marketing", upcoming); slices.Contains(got, pid) {
			t.Fatalf("the cancelled booking still counts")
		}
		var v model.PatientVisit
		if err := a.DB.Gorm().Where("patient_id = ?", pid).Take(&v).Error; err != nil || v.UpcomingUntil != nil {
			t.Fatalf("summary after the cancellation: %+v %v", v, err)
		}
	})
}
