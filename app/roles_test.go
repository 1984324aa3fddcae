package app_test

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"careloop/api"
	"careloop/app"
	"careloop/model"
)

// The role × action table: every staff route declares its roles in the
// spec (x-roles), and every role is tried against every staff route: the
// roles listed get past authorization, the others get 403.
func TestRoleTable(t *testing.T) {
	a := newApp(t, "sqlite", nil)
	var spec struct {
		Paths map[string]map[string]any `yaml:"paths"`
	}
	if err := yaml.Unmarshal(api.Spec, &spec); err != nil {
		t.Fatal(err)
	}
	admin := staffLogin(t, a.Router, app.DemoAdminUser, app.DemoAdminPassword)
	toks := map[string]string{model.RoleAdmin: admin}
	for _, r := range []string{model.RoleMarketing, model.RoleDoctor, model.RoleFrontDesk} {
		toks[r] = newStaff(t, a, admin, "table-"+r, r)
	}
	param := regexp.MustCompile(`\{[a-z_]+\}`)
	checked := 0
	for path, ops := range spec.Paths {
		if !strings.HasPrefix(path, "/api/admin/") || path == "/api/admin/login" {
			continue
		}
		for method, o := range ops {
			op, ok := o.(map[string]any)
			if !ok {
				continue
			}
			raw, declared := op["x-roles"].([]any)
			if !declared {
				t.Errorf("%s %s declares no x-roles", method, path)
				continue
			}
			var allowed []string
			for _, r := range raw {
				allowed = append(allowed, r.(string))
			}
			url := param.ReplaceAllString(path, "999999")
			for role, tok := range toks {
				may := slices.Contains(allowed, role)
				if may && (strings.HasSuffix(path, "/stream") || path == "/api/admin/logout") {
					continue // a live stream does not end by itself; logging out would end the session
				}
				r := call(t, a.Router, strings.ToUpper(method), url, tok, "{}")
				if forbidden := r.Status == 403 && r.ErrCode() == "forbidden"; forbidden == may {
					t.Errorf("%s %s as %s: %d %s (x-roles %v)", method, path, role, r.Status, r.Raw, allowed)
				}
				checked++
			}
		}
	}
	if checked < 250 {
		t.Fatalf("only %d role × route checks", checked)
	}
}

// Object-level authorization: a task is closed by its own role; a
// conversation is answered by its own doctor.
func TestObjectsHaveOwners(t *testing.T) {
	forEachBackend(t, nil, func(t *testing.T, a *app.App) {
		h := a.Router
		admin := staffLogin(t, h, app.DemoAdminUser, app.DemoAdminPassword)
		mkt := newStaff(t, a, admin, "mkt", "marketing")
		doc := newStaff(t, a, admin, "doc", "doctor")
		_, pid := login(t, h, "dev:owned")
		task := model.Task{Kind: model.TaskCriticalValue, Role: model.RoleDoctor, Urgent: true, PatientID: pid, Status: "open", Note: "白细胞 25.0"}
		a.DB.Gorm().Create(&task)
		if r := call(t, h, "POST", fmt.Sprintf("/api/admin/tasks/%d/done", task.ID), mkt, nil); r.Status != 403 || r.ErrCode() != "not_your_task" {
			t.Fatalf("marketing closes a critical value: %d %s", r.Status, r.Raw)
		}
		var still model.Task
		a.DB.Gorm().Where("id = ?", task.ID).Take(&still)
		if still.Status != "open" {
			t.Fatalf("the urgent task was closed by marketing: %s", still.Status)
		}
		if r := call(t, h, "POST", fmt.Sprintf("/api/admin/tasks/%d/done", task.ID), doc, nil); r.Status != 200 {
			t.Fatalf("the doctor closes it: %d %s", r.Status, r.Raw)
		}
		// Two doctors: the one a conversation is routed to answers it.
		docA, idA := newDoctor(t, a, admin, "dr_a", "内科")
		docB, _ := newDoctor(t, a, admin, "dr_b", "-")
		ptok, _ := login(t, h, "dev:asks")
		_, cv := startChat(t, a, ptok, map[string]any{"topic": "报告解读", "doctor_id": idA})
		id := uint64(cv["id"].(float64))
		for _, c := range []struct{ method, path string }{
			{"POST", fmt.Sprintf("/api/admin/conversations/%d/messages", id)},
			{"POST", fmt.Sprintf("/api/admin/conversations/%d/transfer", id)},
			{"POST", fmt.Sprintf("/api/admin/conversations/%d/close", id)},
		} {
			r := call(t, h, c.method, c.path, docB, map[string]any{"content": "我来回答", "department": "外科"})
			if r.Status != 403 || r.ErrCode() != "not_your_conversation" {
				t.Errorf("another doctor: %s %s: %d %s", c.method, c.path, r.Status, r.Raw)
			}
		}
		if r := call(t, h, "POST", fmt.Sprintf("/api/admin/conversations/%d/messages", id), docA, map[string]any{"content": "您好，我看一下报告"}); r.Status != 201 {
			t.Fatalf("its own doctor replies: %d %s", r.Status, r.Raw)
		}
		if r := call(t, h, "POST", fmt.Sprintf("/api/admin/conversations/%d/messages", id), admin, map[string]any{"content": "（管理员）已关注"}); r.Status != 201 {
			t.Fatalf("an admin replies: %d %s", r.Status, r.Raw)
		}
	})
}
