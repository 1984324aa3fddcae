package app_test

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"careloop/app"
	"careloop/model"
	"careloop/service"
)

func newStaff(t *testing.T, a *app.App, admin, username, role string) string {
	t.Helper()
	r := call(t, a.Router, "POST", "/api/admin/staff", admin, map[string]string{"username": username, "password": "password-" + username, "role": role, "name": username})
	if r.Status != 201 {
		t.Fatalf("create staff %s: %d %s", username, r.Status, r.Raw)
	}
	return staffLogin(t, a.Router, username, "password-"+username)
}

func TestProfileHealthAndConsent(t *testing.T) {
	forEachBackend(t, nil, func(t *testing.T, a *app.App) {
		h := a.Router
		tok, id := login(t, h, "dev:alice")
		r := call(t, h, "PUT", "/api/mp/me", tok, map[string]any{"name": "李雷", "gender": "男", "birth_date": "1985-03-09", "region": "上海市浦东新区", "source": "qr:campaign-2026"})
		if r.Status != 200 || r.Body["name"] != "李雷" || r.Body["gender"] != "male" || r.Body["birth_date"] != "1985-03-09" || r.Body["source"] != "qr:campaign-2026" {
			t.Fatalf("update me: %d %s", r.Status, r.Raw)
		}
		// The first touch stays.
		if r := call(t, h, "PUT", "/api/mp/me", tok, map[string]any{"source": "referral:xyz"}); r.Body["source"] != "qr:campaign-2026" {
			t.Fatalf("source was overwritten: %s", r.Raw)
		}
		for name, body := range map[string]map[string]any{
			"me422Gender": {"gender": "x"}, "me422Future": {"birth_date": "2999-01-01"}, "me422Name": {"name": ""},
		} {
			if r := call(t, h, "PUT", "/api/mp/me", tok, body); r.Status != 422 {
				t.Errorf("%s: %d %s", name, r.Status, r.Raw)
			}
		}

		health := map[string]any{"allergies": []string{"青霉素"}, "medications": []string{"氨氯地平 5mg"}, "past_history": []string{"高血压"}}
		if r := call(t, h, "PUT", "/api/mp/me/health", tok, health); r.Status != 422 || r.ErrCode() != "consent_required" {
			t.Fatalf("health write without consent: %d %s", r.Status, r.Raw)
		}
		if r := call(t, h, "POST", "/api/mp/me/consents", tok, map[string]any{"kind": "health_data", "version": "2026-11", "granted": true}); r.Status != 200 {
			t.Fatalf("consent: %d %s", r.Status, r.Raw)
		}
		if r := call(t, h, "PUT", "/api/mp/me/health", tok, health); r.Status != 200 {
			t.Fatalf("health write: %d %s", r.Status, r.Raw)
		}
		got := call(t, h, "GET", "/api/mp/me/health", tok, nil)
		if got.Status != 200 || fmt.Sprint(got.Body["allergies"]) != "[青霉素]" {
			t.Fatalf("health read: %s", got.Raw)
		}
		// At rest the archive is sealed.
		var raw model.HealthArchive
		a.DB.Gorm().Where("patient_id = ?", id).Take(&raw)
		if len(raw.DataEnc) == 0 || bytes.Contains(raw.DataEnc, []byte("青霉素")) || bytes.Contains(raw.DataEnc, []byte("allergies")) {
			t.Fatal("the health archive is readable in the raw row")
		}
		// Withdrawing consent blocks further writes; the decision history stays.
		call(t, h, "POST", "/api/mp/me/consents", tok, map[string]any{"kind": "health_data", "version": "2026-11", "granted": false})
		if r := call(t, h, "PUT", "/api/mp/me/health", tok, health); r.Status != 422 {
			t.Fatalf("health write after withdrawal: %d", r.Status)
		}
		call(t, h, "POST", "/api/mp/me/consents", tok, map[string]any{"kind": "marketing", "version": "2026-11", "granted": true})
		c := call(t, h, "GET", "/api/mp/me/consents", tok, nil)
		items := c.Body["items"].([]any)
		if len(items) != 2 || items[0].(map[string]any)["granted"] != false || items[1].(map[string]any)["granted"] != true {
			t.Fatalf("consents: %s", c.Raw)
		}
		if r := call(t, h, "POST", "/api/mp/me/consents", tok, map[string]any{"kind": "everything", "version": "1", "granted": true}); r.Status != 422 {
			t.Fatalf("unknown consent kind: %d", r.Status)
		}
	})
}

func TestFamilyIsPrivate(t *testing.T) {
	forEachBackend(t, nil, func(t *testing.T, a *app.App) {
		h := a.Router
		alice, _ := login(t, h, "dev:alice")
		bob, _ := login(t, h, "dev:bob")
		r := call(t, h, "POST", "/api/mp/family", alice, map[string]any{"name": "李小龙", "relation": "child", "gender": "male", "birth_date": "2015-06-01", "phone": "13911112222"})
		if r.Status != 201 {
			t.Fatalf("add relative: %d %s", r.Status, r.Raw)
		}
		fid := uint64(r.Body["id"].(float64))
		path := fmt.Sprintf("/api/mp/family/%d", fid)
		if r := call(t, h, "GET", path, alice, nil); r.Status != 200 || r.Body["phone"] != "13911112222" {
			t.Fatalf("own relative: %d %s", r.Status, r.Raw)
		}
		for _, m := range []string{"GET", "PUT", "DELETE"} {
			r := call(t, h, m, path, bob, map[string]any{"name": "黑客", "relation": "child"})
			if r.Status != 404 {
				t.Errorf("%s another patient's relative: %d %s", m, r.Status, r.Raw)
			}
		}
		if r := call(t, h, "GET", "/api/mp/family", bob, nil); len(r.Body["items"].([]any)) != 0 {
			t.Fatalf("bob sees alice's family: %s", r.Raw)
		}
		if r := call(t, h, "POST", "/api/mp/family", alice, map[string]any{"name": "某人", "relation": "cousin"}); r.Status != 422 || r.ErrCode() != "invalid_relation" {
			t.Fatalf("bad relation: %d %s", r.Status, r.Raw)
		}
		if r := call(t, h, "DELETE", path, alice, nil); r.Status != 204 {
			t.Fatalf("delete: %d", r.Status)
		}
	})
}

func TestExportAndErase(t *testing.T) {
	forEachBackend(t, nil, func(t *testing.T, a *app.App) {
		h := a.Router
		tok, id := login(t, h, "dev:carol")
		call(t, h, "PUT", "/api/mp/me", tok, map[string]any{"name": "韩梅梅"})
		call(t, h, "POST", "/api/mp/phone", tok, map[string]string{"code": "dev:13600136000"})
		call(t, h, "POST", "/api/mp/me/consents", tok, map[string]any{"kind": "health_data", "version": "1", "granted": true})
		call(t, h, "PUT", "/api/mp/me/health", tok, map[string]any{"allergies": []string{"海鲜"}})
		call(t, h, "POST", "/api/mp/family", tok, map[string]any{"name": "韩爸爸", "relation": "parent"})
		cv := call(t, h, "POST", "/api/mp/conversations", tok, nil)
		call(t, h, "POST", fmt.Sprintf("/api/mp/conversations/%v/messages", cv.Body["id"]), tok, map[string]any{"content": "最近总是头晕"})
		ex := call(t, h, "GET", "/api/mp/me/export", tok, nil)
		for _, want := range []string{"韩梅梅", "13600136000", "海鲜", "韩爸爸", "health_data", "最近总是头晕"} {
			if !bytes.Contains(ex.Raw, []byte(want)) {
				t.Errorf("export lacks %q", want)
			}
		}
		if r := call(t, h, "POST", "/api/mp/me/erase", tok, map[string]any{}); r.Status != 422 {
			t.Fatalf("erase without confirm: %d", r.Status)
		}
		if r := call(t, h, "POST", "/api/mp/me/erase", tok, map[string]any{"confirm": true}); r.Status != 204 {
			t.Fatalf("erase: %d %s", r.Status, r.Raw)
		}
		if r := call(t, h, "GET", "/api/mp/me", tok, nil); r.Status != 401 {
			t.Fatalf("token after erasure: %d", r.Status)
		}
		var p model.Patient
		a.DB.Gorm().Where("id = ?", id).Take(&p)
		if p.Name == "韩梅梅" || p.PhoneHash != nil || p.OpenID != nil || p.ErasedAt == nil {
			t.Fatalf("not anonymised: %+v", p)
		}
		var n int64
		a.DB.Gorm().Model(&model.HealthArchive{}).Where("patient_id = ?", id).Count(&n)
		if n != 0 {
			t.Fatal("health archive kept after erasure")
		}
		n = messagesWith(a, "1 = ?", 1, "最近总是头晕")
		if n != 0 {
			t.Fatal("chat messages kept after erasure")
		}
		// Logging in again starts afresh.
		if _, again := login(t, h, "dev:carol"); again == id {
			t.Fatal("erased patient came back")
		}
	})
}

func TestStaffRolesTagsAndAudit(t *testing.T) {
	forEachBackend(t, nil, func(t *testing.T, a *app.App) {
		h := a.Router
		admin := staffLogin(t, h, app.DemoAdminUser, app.DemoAdminPassword)
		mkt := newStaff(t, a, admin, "mkt", "marketing")
		doc := newStaff(t, a, admin, "doc", "doctor")
		desk := newStaff(t, a, admin, "desk", "frontdesk")

		// Roles.
		for _, c := range []struct {
			name, method, path, token string
			body                      any
			status                    int
		}{
			{"tags403FrontDesk", "POST", "/api/admin/tags", desk, map[string]string{"name": "x", "category": "basic"}, 403},
			{"staff403Marketing", "GET", "/api/admin/staff", mkt, nil, 403},
			{"audit403Doctor", "GET", "/api/admin/audit", doc, nil, 403},
			{"block403Doctor", "POST", "/api/admin/patients/1/block", doc, nil, 403},
			{"patients200FrontDesk", "GET", "/api/admin/patients", desk, nil, 200},
		} {
			if r := call(t, h, c.method, c.path, c.token, c.body); r.Status != c.status {
				t.Errorf("%s: %d %s", c.name, r.Status, r.Raw)
			}
		}

		// A tagged patient with a phone and a health archive.
		ptok, pid := login(t, h, "dev:alice")
		call(t, h, "PUT", "/api/mp/me", ptok, map[string]any{"name": "王小明"})
		call(t, h, "POST", "/api/mp/phone", ptok, map[string]string{"code": "dev:13800138000"})
		call(t, h, "POST", "/api/mp/me/consents", ptok, map[string]any{"kind": "health_data", "version": "1", "granted": true})
		call(t, h, "PUT", "/api/mp/me/health", ptok, map[string]any{"past_history": []string{"糖尿病"}})
		_, other := login(t, h, "dev:bob")
		tag := call(t, h, "POST", "/api/admin/tags", mkt, map[string]string{"name": "高血压", "category": "follow_up", "kind": "fact"})
		if tag.Status != 201 {
			t.Fatalf("create tag: %d %s", tag.Status, tag.Raw)
		}
		tagID := uint64(tag.Body["id"].(float64))
		if r := call(t, h, "POST", "/api/admin/tags", mkt, map[string]string{"name": "高血压", "category": "basic"}); r.Status != 409 {
			t.Fatalf("duplicate tag: %d", r.Status)
		}
		if r := call(t, h, "POST", fmt.Sprintf("/api/admin/patients/%d/tags", pid), doc, map[string]any{"tag_id": tagID}); r.Status != 200 || len(r.Body["items"].([]any)) != 1 {
			t.Fatalf("tag patient: %d %s", r.Status, r.Raw)
		}
		list := call(t, h, "GET", fmt.Sprintf("/api/admin/patients?tags=%d", tagID), mkt, nil)
		items := list.Body["items"].([]any)
		if len(items) != 1 || uint64(items[0].(map[string]any)["id"].(float64)) != pid {
			t.Fatalf("filter by tag: %s", list.Raw)
		}
		if items[0].(map[string]any)["phone"] != "138****8000" {
			t.Fatalf("marketing must see a masked phone: %s", list.Raw)
		}
		if r := call(t, h, "GET", "/api/admin/patients?phone=13800138000", desk, nil); len(r.Body["items"].([]any)) != 1 || r.Body["items"].([]any)[0].(map[string]any)["phone"] != "13800138000" {
			t.Fatalf("front desk by phone: %s", r.Raw)
		}
		if r := call(t, h, "GET", "/api/admin/patients?name=小明", desk, nil); len(r.Body["items"].([]any)) != 1 {
			t.Fatalf("by name: %s", r.Raw)
		}

		// 360: the doctor sees the archive, marketing does not; both reads are audited.
		v := call(t, h, "GET", fmt.Sprintf("/api/admin/patients/%d", pid), doc, nil)
		if v.Status != 200 || v.Body["health_archive"] == nil || len(v.Body["tags"].([]any)) != 1 {
			t.Fatalf("doctor's 360: %d %s", v.Status, v.Raw)
		}
		if v := call(t, h, "GET", fmt.Sprintf("/api/admin/patients/%d", pid), mkt, nil); v.Body["health_archive"] != nil {
			t.Fatalf("marketing sees the health archive: %s", v.Raw)
		}
		if r := call(t, h, "GET", "/api/admin/patients/999999", doc, nil); r.Status != 404 {
			t.Fatalf("unknown patient: %d", r.Status)
		}
		au := call(t, h, "GET", fmt.Sprintf("/api/admin/audit?patient_id=%d&action=patient.health.read", pid), admin, nil)
		entries := au.Body["items"].([]any)
		if len(entries) != 1 || entries[0].(map[string]any)["role"] != "doctor" || entries[0].(map[string]any)["ip"] == "" {
			t.Fatalf("health read audit: %s", au.Raw)
		}
		all := call(t, h, "GET", fmt.Sprintf("/api/admin/audit?patient_id=%d&limit=2", pid), admin, nil)
		if len(all.Body["items"].([]any)) != 2 || all.Body["next_cursor"] == "" {
			t.Fatalf("audit paging: %s", all.Raw)
		}
		next := call(t, h, "GET", fmt.Sprintf("/api/admin/audit?patient_id=%d&limit=2&cursor=%s", pid, all.Body["next_cursor"]), admin, nil)
		if len(next.Body["items"].([]any)) == 0 {
			t.Fatalf("audit second page empty: %s", next.Raw)
		}

		// Blocking ends the patient's sessions and refuses new logins.
		if r := call(t, h, "POST", fmt.Sprintf("/api/admin/patients/%d/block", other), admin, nil); r.Status != 200 || r.Body["blocked"] != true {
			t.Fatalf("block: %d", r.Status)
		}
		if r := call(t, h, "POST", "/api/mp/login", "", map[string]string{"code": "dev:bob"}); r.Status != 403 || r.ErrCode() != "account_blocked" {
			t.Fatalf("blocked login: %d %s", r.Status, r.Raw)
		}
		// Disabling a staff account ends its sessions.
		var deskID uint64
		for _, s := range call(t, h, "GET", "/api/admin/staff", admin, nil).Body["items"].([]any) {
			if s.(map[string]any)["username"] == "desk" {
				deskID = uint64(s.(map[string]any)["id"].(float64))
			}
		}
		if r := call(t, h, "PUT", fmt.Sprintf("/api/admin/staff/%d", deskID), admin, map[string]any{"disabled": true}); r.Status != 200 {
			t.Fatalf("disable: %d %s", r.Status, r.Raw)
		}
		if r := call(t, h, "GET", "/api/admin/me", desk, nil); r.Status != 401 && r.Status != 403 {
			t.Fatalf("disabled staff still works: %d", r.Status)
		}
	})
}

// Real-name identity: the ID card is checked (GB 11643), decides birth
// date, gender and region, is sealed at rest, masked in every answer but
// the full-number roles' (audited), and finds the patient at the front desk.
func TestRealNameIdentity(t *testing.T) {
	forEachBackend(t, nil, func(t *testing.T, a *app.App) {
		h := a.Router
		const card = "11010519491231002X"
		tok, pid := login(t, h, "dev:realname")
		for _, c := range []struct {
			body       map[string]any
			status     int
			code, what string
		}{
			{map[string]any{"id_card": "110105194912310021"}, 422, "invalid_id_card", "wrong check digit"},
			{map[string]any{"id_card": "1101051949123100"}, 422, "invalid_id_card", "16 digits"},
			{map[string]any{"id_card": card, "gender": "male"}, 422, "id_card_mismatch", "a man's gender on a woman's card"},
			{map[string]any{"id_card": card, "birth_date": "1950-01-01"}, 422, "id_card_mismatch", "another birth date"},
			{map[string]any{"region_code": "999999"}, 422, "invalid_region", "unknown region"},
		} {
			if r := call(t, h, "PUT", "/api/mp/me", tok, c.body); r.Status != c.status || r.ErrCode() != c.code {
				t.Errorf("%s: %d %s", c.what, r.Status, r.Raw)
			}
		}
		r := call(t, h, "PUT", "/api/mp/me", tok, map[string]any{"name": "王芳", "id_card": strings.ToLower(card)})
		if r.Status != 200 || r.Body["id_card"] != "1101**********002X" || r.Body["gender"] != "female" || r.Body["birth_date"] != "1949-12-31" ||
			r.Body["region_code"] != "110105" || r.Body["region"] != "北京市朝阳区" {
			t.Fatalf("set the card: %d %s", r.Status, r.Raw)
		}
		// Kept consistent afterwards.
		if r := call(t, h, "PUT", "/api/mp/me", tok, map[string]any{"gender": "male"}); r.Status != 422 || r.ErrCode() != "id_card_mismatch" {
			t.Fatalf("change gender against the card: %d %s", r.Status, r.Raw)
		}
		if r := call(t, h, "PUT", "/api/mp/me", tok, map[string]any{"region_code": "440305"}); r.Body["region"] != "广东省深圳市南山区" {
			t.Fatalf("choose a region: %s", r.Raw)
		}
		other, _ := login(t, h, "dev:impostor")
		if r := call(t, h, "PUT", "/api/mp/me", other, map[string]any{"id_card": card}); r.Status != 409 || r.ErrCode() != "id_card_taken" {
			t.Fatalf("the same card on another account: %d %s", r.Status, r.Raw)
		}
		fm := call(t, h, "POST", "/api/mp/family", tok, map[string]any{"name": "王小明", "relation": "child", "id_card": "440305199001010018"})
		if fm.Status != 201 || fm.Body["id_card"] != "4403**********0018" || fm.Body["gender"] != "male" || fm.Body["birth_date"] != "1990-01-01" {
			t.Fatalf("family member with a card: %d %s", fm.Status, fm.Raw)
		}
		if r := call(t, h, "POST", "/api/mp/family", tok, map[string]any{"name": "王小红", "relation": "child", "gender": "female", "id_card": "440305199001010018"}); r.Status != 422 {
			t.Fatalf("family member whose gender contradicts the card: %d %s", r.Status, r.Raw)
		}
		// Sealed at rest: the number is nowhere in the patients' or family rows.
		for _, table := range []string{"patients", "family_members"} {
			var rows []map[string]any
			a.DB.Gorm().Table(table).Find(&rows)
			if strings.Contains(fmt.Sprint(rows), "1101051949") || strings.Contains(fmt.Sprint(rows), "4403051990") {
				t.Fatalf("%s holds an ID card in clear", table)
			}
		}
		// Staff: masked for most roles, full (and audited) for the front desk.
		admin := staffLogin(t, h, app.DemoAdminUser, app.DemoAdminPassword)
		doc := newStaff(t, a, admin, "doc", "doctor")
		desk := newStaff(t, a, admin, "desk", "frontdesk")
		if v := call(t, h, "GET", fmt.Sprintf("/api/admin/patients/%d", pid), doc, nil); v.Body["id_card"] != "1101**********002X" {
			t.Fatalf("doctor's 360: %v", v.Body["id_card"])
		}
		if v := call(t, h, "GET", fmt.Sprintf("/api/admin/patients/%d", pid), desk, nil); v.Body["id_card"] != card {
			t.Fatalf("front desk's 360: %v", v.Body["id_card"])
		}
		au := call(t, h, "GET", fmt.Sprintf("/api/admin/audit?patient_id=%d&action=patient.id_card.read", pid), admin, nil)
		if len(au.Body["items"].([]any)) != 1 {
			t.Fatalf("the full number's read is not audited: %s", au.Raw)
		}
		// The front desk finds the booking by the card.
		sl := testSlot(t, a, "06:00", 5)
		if r := bookCall(t, h, tok, "rn", map[string]any{"package_id": anyPackage(t, a).ID, "slot_id": sl.ID}); r.Status != 201 {
			t.Fatalf("book: %d %s", r.Status, r.Raw)
		}
		if r := call(t, h, "GET", "/api/admin/bookings?q="+card, desk, nil); len(r.Body["items"].([]any)) != 1 {
			t.Fatalf("search by ID card: %s", r.Raw)
		}
		// The patient's own copy has the full number.
		if ex := call(t, h, "GET", "/api/mp/me/export", tok, nil); ex.Body["profile"].(map[string]any)["id_card"] != card {
			t.Fatalf("export: %v", ex.Body["profile"])
		}
	})
}

// A name search matches the text as typed: "%" and "_" are not wildcards
// (on SQLite too, which has no default LIKE escape).
func TestNameSearchIsLiteral(t *testing.T) {
	forEachBackend(t, nil, func(t *testing.T, a *app.App) {
		for _, n := range []string{"张_三", "张x三", "李100%", "李1000"} {
			if err := a.DB.Gorm().Create(&model.Patient{Name: n, Gender: "unknown"}).Error; err != nil {
				t.Fatal(err)
			}
		}
		admin := staffLogin(t, a.Router, app.DemoAdminUser, app.DemoAdminPassword)
		for q, want := range map[string]int{"张_": 1, "100%": 1, "张": 2, "!": 0} {
			r := call(t, a.Router, "GET", "/api/admin/patients?name="+url.QueryEscape(q), admin, nil)
			if items := r.Body["items"].([]any); len(items) != want {
				t.Errorf("name %q: %d patients, want %d: %s", q, len(items), want, r.Raw)
			}
		}
	})
}

// The 360 carries each kind of work to the roles that do it: points to the
// front desk and marketing, survey answers to marketing, complaints to every
// role handling them, conversations (without messages) to doctors.
func TestPatient360ByRole(t *testing.T) {
	a := newApp(t, "sqlite", nil)
	h := a.Router
	ctx := context.Background()
	admin := staffLogin(t, h, app.DemoAdminUser, app.DemoAdminPassword)
	doc := newStaff(t, a, admin, "doc360", "doctor")
	mkt := newStaff(t, a, admin, "mkt360", "marketing")
	desk := newStaff(t, a, admin, "desk360", "frontdesk")
	tok, pid := login(t, h, "dev:p360")
	if r := call(t, h, "POST", "/api/mp/complaints", tok, map[string]any{"category": "environment", "content": "候诊区太拥挤了，希望增加座位"}); r.Status != 201 {
		t.Fatalf("complaint: %d %s", r.Status, r.Raw)
	}
	if r := call(t, h, "POST", "/api/mp/conversations", tok, map[string]any{"topic": "报告解读"}); r.Status/100 != 2 {
		t.Fatalf("conversation: %d %s", r.Status, r.Raw)
	}
	if err := a.Points.Adjust(ctx, service.System, pid, 120, "测试"); err != nil {
		t.Fatal(err)
	}
	a.DB.Gorm().Create(&model.SurveyResponse{InviteID: 999, SurveyID: 1, PatientID: pid, Comment: "很满意"})
	view := func(token string) map[string]any {
		r := call(t, h, "GET", fmt.Sprintf("/api/admin/patients/%d", pid), token, nil)
		if r.Status != 200 {
			t.Fatalf("360: %d %s", r.Status, r.Raw)
		}
		return r.Body
	}
	has := func(v map[string]any, key string) bool { _, ok := v[key]; return ok }
	for _, c := range []struct {
		who                                       string
		token                                     string
		points, surveys, complaints, conversation bool
	}{
		{"marketing", mkt, true, true, true, false},
		{"doctor", doc, false, false, true, true},
		{"frontdesk", desk, true, false, true, false},
		{"admin", admin, true, true, true, true},
	} {
		v := view(c.token)
		if has(v, "points") != c.points || has(v, "surveys") != c.surveys || has(v, "complaints") != c.complaints || has(v, "conversations") != c.conversation {
			t.Errorf("%s sees points %v, surveys %v, complaints %v, conversations %v", c.who, has(v, "points"), has(v, "surveys"), has(v, "complaints"), has(v, "conversations"))
		}
	}
	v := view(admin)
	if v["points"].(map[string]any)["balance"].(float64) != 120 || len(v["complaints"].([]any)) != 1 || len(v["conversations"].([]any)) != 1 ||
		v["surveys"].([]any)[0].(map[string]any)["comment"] != "很满意" {
		t.Fatalf("the admin's 360: %v", v)
	}
}

// The 患者 page's one search box finds a patient by ID card (audited), 尾号,
// HIS id or the start of a name.
func TestPatientSearchBox(t *testing.T) {
	a := newApp(t, "sqlite", nil)
	h := a.Router
	admin := staffLogin(t, h, app.DemoAdminUser, app.DemoAdminPassword)
	doc := newStaff(t, a, admin, "docbox", "doctor")
	rows := [][]string{{"姓名", "身份证号", "手机号", "HIS号"}, {"欧阳明", "11010519491231002X", "13911112222", "HB001"}, {"欧阳红", "", "13933334444", "HB002"}}
	if _, err := service.NewImporter(a.DB, a.Sealer, nil).Import(context.Background(), rows, nil); err != nil {
		t.Fatal(err)
	}
	names := func(q string) string {
		r := call(t, h, "GET", "/api/admin/patients?q="+url.QueryEscape(q), doc, nil)
		if r.Status != 200 {
			t.Fatalf("search %q: %d %s", q, r.Status, r.Raw)
		}
		var out []string
		for _, it := range r.Body["items"].([]any) {
			out = append(out, it.(map[string]any)["name"].(string))
		}
		return strings.Join(out, ",")
	}
	for q, want := range map[string]string{"11010519491231002X": "欧阳明", "2222": "欧阳明", "HB002": "欧阳红", "欧阳": "欧阳红,欧阳明", "阳": ""} {
		if got := names(q); got != want {
			t.Errorf("search %q: %q, want %q", q, got, want)
		}
	}
	var audited int64
	a.DB.Gorm().Model(&model.AuditLog{}).Where("action = ? AND detail LIKE ?", service.AuditPatientSearch, "by id card%").Count(&audited)
	if audited != 1 {
		t.Fatalf("searches by ID card audited: %d", audited)
	}
}
