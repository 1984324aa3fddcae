package app_test

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"careloop/api"
	"careloop/app"
	"careloop/model"
	"careloop/notify"
	"careloop/service"
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
	actions := map[service.Action]bool{}
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
			// The spec's roles are the service's table for the action.
			if act, named := op["x-action"].(string); named {
				if want := service.Roles(service.Action(act)); !sameRoles(allowed, want) {
					t.Errorf("%s %s: x-roles %v, but the service lets %v do %s", method, path, allowed, want, act)
				}
				actions[service.Action(act)] = true
			} else if len(allowed) != 4 {
				t.Errorf("%s %s names no x-action but is not open to every staff role: %v", method, path, allowed)
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
	for _, a := range service.Actions() {
		if !actions[a] {
			t.Errorf("action %s is in the service's table but no route does it", a)
		}
	}
}

func sameRoles(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
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

// The same table in the service: every action's use cases, called directly
// (no route in front), refuse the roles the table leaves out and let the
// others past authorization (what they answer then, mostly "not found" for
// the made-up ids used here, is not the point).
func TestServicesCheckTheirActions(t *testing.T) {
	a := newApp(t, "sqlite", nil)
	d := a.Deps
	const none = 999999
	day := time.Now().In(model.Shanghai).Format(time.DateOnly)
	calls := map[service.Action][]func(context.Context, service.Principal) error{
		service.ActPatientsRead: {
			func(ctx context.Context, p service.Principal) error {
				_, _, err := d.PatientAdmin.Search(ctx, p, service.PatientQuery{Name: "无此人"})
				return err
			},
			func(ctx context.Context, p service.Principal) error {
				_, err := d.PatientAdmin.View(ctx, p, none)
				return err
			},
		},
		service.ActPatientsTag: {
			func(ctx context.Context, p service.Principal) error { return d.Tags.Assign(ctx, p, none, none) },
			func(ctx context.Context, p service.Principal) error { return d.Tags.Unassign(ctx, p, none, none) },
		},
		service.ActPatientsBlock: {
			func(ctx context.Context, p service.Principal) error {
				return d.PatientAdmin.SetBlocked(ctx, p, none, true)
			},
		},
		service.ActPatientsImport: {
			func(ctx context.Context, p service.Principal) error {
				_, err := d.Imports.Start(ctx, p, "x.txt", nil)
				return err
			},
			func(ctx context.Context, p service.Principal) error {
				_, err := d.Imports.Get(ctx, p, none)
				return err
			},
			func(ctx context.Context, p service.Principal) error {
				_, _, err := d.Imports.List(ctx, p, "", 10)
				return err
			},
			func(ctx context.Context, p service.Principal) error {
				_, _, err := d.Imports.Rejected(ctx, p, none)
				return err
			},
		},
		service.ActArticles: {
			func(ctx context.Context, p service.Principal) error {
				_, err := d.Articles.UploadMedia(ctx, p, nil)
				return err
			},
			func(ctx context.Context, p service.Principal) error {
				_, err := d.Articles.Create(ctx, p, service.ArticleInput{})
				return err
			},
			func(ctx context.Context, p service.Principal) error {
				_, err := d.Articles.Update(ctx, p, none, service.ArticleInput{})
				return err
			},
			func(ctx context.Context, p service.Principal) error {
				_, _, err := d.Articles.List(ctx, p, service.ArticleFilter{})
				return err
			},
			func(ctx context.Context, p service.Principal) error {
				_, err := d.Articles.Get(ctx, p, none)
				return err
			},
			func(ctx context.Context, p service.Principal) error {
				_, err := d.Articles.Publish(ctx, p, none)
				return err
			},
			func(ctx context.Context, p service.Principal) error { return d.Articles.Preview(ctx, p, none, "o", "") },
		},
		service.ActChannels: {
			func(ctx context.Context, p service.Principal) error {
				_, err := d.Channels.Create(ctx, p, service.ChannelInput{})
				return err
			},
			func(ctx context.Context, p service.Principal) error { _, err := d.Channels.List(ctx, p); return err },
			func(ctx context.Context, p service.Principal) error {
				_, _, err := d.Channels.QRImage(ctx, p, none, 64)
				return err
			},
		},
		service.ActRFM: {
			func(ctx context.Context, p service.Principal) error { _, err := d.RFM.Start(ctx, p); return err },
			func(ctx context.Context, p service.Principal) error { _, err := d.RFM.Get(ctx, p, none); return err },
			func(ctx context.Context, p service.Principal) error {
				_, _, err := d.RFM.Runs(ctx, p, "", 10)
				return err
			},
		},
		service.ActSegments: {
			func(ctx context.Context, p service.Principal) error {
				_, err := d.Segments.Create(ctx, p, service.SegmentInput{})
				return err
			},
			func(ctx context.Context, p service.Principal) error {
				_, _, err := d.Segments.Preview(ctx, p, "marketing", service.SegmentConditions{})
				return err
			},
			func(ctx context.Context, p service.Principal) error {
				_, err := d.Segments.List(ctx, p, "")
				return err
			},
			func(ctx context.Context, p service.Principal) error {
				_, err := d.Segments.Export(ctx, p, none, func(service.SegmentExportRow) error { return nil })
				return err
			},
		},
		service.ActCampaigns: {
			func(ctx context.Context, p service.Principal) error {
				_, err := d.Campaigns.Create(ctx, p, service.CampaignInput{})
				return err
			},
			func(ctx context.Context, p service.Principal) error {
				_, err := d.Campaigns.Get(ctx, p, none)
				return err
			},
			func(ctx context.Context, p service.Principal) error {
				_, err := d.Campaigns.Pause(ctx, p, none)
				return err
			},
			func(ctx context.Context, p service.Principal) error {
				_, err := d.Campaigns.SetFatigue(ctx, p, service.FatigueCap{})
				return err
			},
		},
		service.ActMassSend: {
			func(ctx context.Context, p service.Principal) error {
				_, err := d.MassSends.Create(ctx, p, service.MassInput{})
				return err
			},
			func(ctx context.Context, p service.Principal) error {
				_, err := d.MassSends.Get(ctx, p, none)
				return err
			},
			func(ctx context.Context, p service.Principal) error {
				_, _, err := d.MassSends.List(ctx, p, "", 10)
				return err
			},
		},
		service.ActTagsRead: {func(ctx context.Context, p service.Principal) error { _, err := d.Tags.List(ctx, p, ""); return err }},
		service.ActTagsManage: {
			func(ctx context.Context, p service.Principal) error {
				_, err := d.Tags.Create(ctx, p, service.TagInput{})
				return err
			},
			func(ctx context.Context, p service.Principal) error { return d.Tags.Delete(ctx, p, none) },
		},
		service.ActStaffManage: {
			func(ctx context.Context, p service.Principal) error { _, err := d.Staff.List(ctx, p); return err },
			func(ctx context.Context, p service.Principal) error {
				_, err := d.Staff.Create(ctx, p, service.StaffInput{})
				return err
			},
			func(ctx context.Context, p service.Principal) error {
				_, err := d.Staff.Update(ctx, p, none, service.StaffInput{})
				return err
			},
		},
		service.ActAuditRead: {func(ctx context.Context, p service.Principal) error {
			_, _, err := d.Audit.List(ctx, p, service.AuditFilter{})
			return err
		}},
		service.ActPackagesRead: {func(ctx context.Context, p service.Principal) error {
			_, err := d.Catalog.AllPackages(ctx, p)
			return err
		}},
		service.ActPackagesManage: {
			func(ctx context.Context, p service.Principal) error {
				_, err := d.Catalog.CreatePackage(ctx, p, service.PackageInput{})
				return err
			},
			func(ctx context.Context, p service.Principal) error {
				_, err := d.Catalog.UpdatePackage(ctx, p, none, service.PackageInput{})
				return err
			},
		},
		service.ActScheduleRead: {
			func(ctx context.Context, p service.Principal) error {
				_, err := d.Catalog.SlotsBetween(ctx, p, day, day)
				return err
			},
			func(ctx context.Context, p service.Principal) error {
				_, err := d.Catalog.ClosedDays(ctx, p)
				return err
			},
		},
		service.ActScheduleManage: {
			func(ctx context.Context, p service.Principal) error {
				_, err := d.Catalog.Generate(ctx, p, service.ScheduleInput{})
				return err
			},
			func(ctx context.Context, p service.Principal) error {
				_, _, err := d.Bookings.CloseDay(ctx, p, "不是日期", "", false)
				return err
			},
			func(ctx context.Context, p service.Principal) error {
				return d.Bookings.OpenDay(ctx, p, "不是日期")
			},
		},
		service.ActBookingsDesk: {
			func(ctx context.Context, p service.Principal) error {
				_, _, err := d.FrontDesk.Search(ctx, p, service.FrontDeskQuery{Date: day, Code: "NONE"})
				return err
			},
			func(ctx context.Context, p service.Principal) error {
				_, err := d.FrontDesk.Transition(ctx, p, none, model.BookingCheckedIn)
				return err
			},
			func(ctx context.Context, p service.Principal) error {
				_, err := d.FrontDesk.Undo(ctx, p, none)
				return err
			},
			func(ctx context.Context, p service.Principal) error { return d.FrontDesk.People(ctx, p, nil) },
			func(ctx context.Context, p service.Principal) error {
				_, _, err := d.FrontDesk.Book(ctx, p, service.DeskBookInput{PatientID: none, PackageID: none, SlotID: none, IdempotencyKey: "k"})
				return err
			},
			func(ctx context.Context, p service.Principal) error {
				_, err := d.FrontDesk.Cancel(ctx, p, none, "")
				return err
			},
			func(ctx context.Context, p service.Principal) error {
				_, err := d.FrontDesk.Reschedule(ctx, p, none, none)
				return err
			},
		},
		service.ActChatAnswer: {
			func(ctx context.Context, p service.Principal) error {
				_, _, err := d.Chat.Inbox(ctx, p, service.InboxQuery{})
				return err
			},
			func(ctx context.Context, p service.Principal) error { _, err := d.Chat.Counts(ctx, p); return err },
			func(ctx context.Context, p service.Principal) error { _, err := d.Chat.Get(ctx, p, none); return err },
			func(ctx context.Context, p service.Principal) error {
				_, err := d.Chat.Reply(ctx, p, none, "您好")
				return err
			},
			func(ctx context.Context, p service.Principal) error { _, err := d.Chat.Claim(ctx, p, none); return err },
			func(ctx context.Context, p service.Principal) error {
				_, err := d.Chat.Transfer(ctx, p, none, service.TransferRequest{Department: "外科"})
				return err
			},
			func(ctx context.Context, p service.Principal) error {
				_, err := d.Chat.CannedReplies(ctx, p)
				return err
			},
			func(ctx context.Context, p service.Principal) error {
				_, err := d.Chat.SaveCannedReply(ctx, p, "", "", false)
				return err
			},
			func(ctx context.Context, p service.Principal) error { return d.Chat.DeleteCannedReply(ctx, p, none) },
			func(ctx context.Context, p service.Principal) error { return d.Chat.SetDuty(ctx, p, p.ID, "", false) },
			func(ctx context.Context, p service.Principal) error {
				_, done, err := d.Chat.Watch(ctx, p)
				if done != nil {
					done()
				}
				return err
			},
		},
		service.ActChatDutyOthers: {func(ctx context.Context, p service.Principal) error { return d.Chat.SetDuty(ctx, p, none, "", true) }},
		service.ActChatSettings: {func(ctx context.Context, p service.Principal) error {
			return d.Chat.SaveSettings(ctx, p, service.ChatSettings{})
		}},
		service.ActComplaintsHandle: {
			func(ctx context.Context, p service.Principal) error {
				_, _, err := d.Complaints.List(ctx, p, "", false, "", 0)
				return err
			},
			func(ctx context.Context, p service.Principal) error {
				_, err := d.Complaints.Advance(ctx, p, none, service.StepInput{To: model.ComplaintAssigned})
				return err
			},
		},
		service.ActTasksWork: {
			func(ctx context.Context, p service.Principal) error { _, err := d.Tasks.Open(ctx, p); return err },
			func(ctx context.Context, p service.Principal) error {
				_, err := d.Tasks.Complete(ctx, p, none)
				return err
			},
		},
		service.ActKPIRead: {func(ctx context.Context, p service.Principal) error {
			_, err := d.Complaints.KPI(ctx, p, time.Now().AddDate(0, -1, 0), time.Now(), "")
			return err
		}},
		service.ActNotificationsRead: {
			func(ctx context.Context, p service.Principal) error {
				_, err := d.Notices.List(ctx, p, notify.Filter{})
				return err
			},
			func(ctx context.Context, p service.Principal) error { _, err := d.Notices.Reasons(ctx, p); return err },
		},
		service.ActNotificationsFix: {
			func(ctx context.Context, p service.Principal) error {
				_, err := d.Notices.Retry(ctx, p, none)
				return err
			},
			func(ctx context.Context, p service.Principal) error {
				_, err := d.Notices.Cancel(ctx, p, none, "")
				return err
			},
		},
		service.ActCareRules: {func(ctx context.Context, p service.Principal) error {
			_, err := d.CareRules.Settings(ctx, p)
			return err
		}},
		service.ActPointsManage: {
			func(ctx context.Context, p service.Principal) error { return d.Points.Adjust(ctx, p, none, 0, "") },
			func(ctx context.Context, p service.Principal) error {
				_, err := d.Points.Rewards(ctx, p, true)
				return err
			},
			func(ctx context.Context, p service.Principal) error {
				_, err := d.Points.SaveReward(ctx, p, model.Reward{})
				return err
			},
		},
		service.ActReportsLink: {
			func(ctx context.Context, p service.Principal) error {
				_, err := d.Reports.Unmatched(ctx, p)
				return err
			},
			func(ctx context.Context, p service.Principal) error {
				_, err := d.Reports.Link(ctx, p, none, none, nil, nil)
				return err
			},
		},
		service.ActReportsClinical: {
			func(ctx context.Context, p service.Principal) error {
				_, err := d.Reports.StaffGet(ctx, p, none)
				return err
			},
			func(ctx context.Context, p service.Principal) error {
				_, err := d.Reports.Interpret(ctx, p, none, "")
				return err
			},
		},
		service.ActSurveysManage: {
			func(ctx context.Context, p service.Principal) error { _, err := d.Surveys.List(ctx, p); return err },
			func(ctx context.Context, p service.Principal) error {
				_, err := d.Surveys.Results(ctx, p, service.ResultFilter{})
				return err
			},
			func(ctx context.Context, p service.Principal) error {
				_, err := d.Surveys.Define(ctx, p, "", "", "", nil)
				return err
			},
		},
		service.ActOAManage: {
			func(ctx context.Context, p service.Principal) error { _, err := d.OA.AutoReplies(ctx, p); return err },
			func(ctx context.Context, p service.Principal) error {
				_, err := d.WxTags.Mirror(ctx, p, none, true)
				return err
			},
			func(ctx context.Context, p service.Principal) error { _, err := d.WxTags.List(ctx, p); return err },
			func(ctx context.Context, p service.Principal) error { return d.WxTags.SyncNow(ctx, p) },
			func(ctx context.Context, p service.Principal) error {
				_, err := d.OA.SaveAutoReply(ctx, p, model.AutoReply{})
				return err
			},
			func(ctx context.Context, p service.Principal) error { return d.OA.DeleteAutoReply(ctx, p, none) },
			func(ctx context.Context, p service.Principal) error { _, err := d.OA.LoadMenu(ctx, p); return err },
		},
	}
	// Use cases a patient calls too, on their own data: for staff they are
	// the action's.
	own := map[service.Action][]func(context.Context, service.Principal) error{
		service.ActChatAnswer: {
			func(ctx context.Context, p service.Principal) error {
				_, _, err := d.Chat.Messages(ctx, p, none, 0, 0)
				return err
			},
			func(ctx context.Context, p service.Principal) error {
				_, err := d.Chat.Close(ctx, p, none, false)
				return err
			},
		},
		service.ActComplaintsHandle: {
			func(ctx context.Context, p service.Principal) error {
				_, _, err := d.Complaints.Get(ctx, p, none)
				return err
			},
		},
		service.ActPointsRead: {func(ctx context.Context, p service.Principal) error {
			_, _, err := d.Points.Ledger(ctx, p, none, "", 10)
			return err
		}},
	}
	ctx := context.Background()
	roles := []string{model.RoleAdmin, model.RoleMarketing, model.RoleDoctor, model.RoleFrontDesk}
	for _, act := range service.Actions() {
		fs := append(calls[act], own[act]...)
		if len(fs) == 0 {
			t.Errorf("no use case of %s is tried", act)
		}
		for i, f := range fs {
			for _, role := range roles {
				p := service.Principal{Kind: model.SubjectStaff, ID: 4242, Role: role, SessionID: "s"}
				err := f(ctx, p)
				refused := errors.Is(err, model.ErrForbidden)
				if may := slices.Contains(service.Roles(act), role); refused == may {
					t.Errorf("%s #%d as %s: %v (the table says %v)", act, i, role, err, service.Roles(act))
				}
			}
			// A patient's token is never a staff member's.
			if i >= len(calls[act]) {
				continue
			}
			if err := f(ctx, service.Principal{Kind: model.SubjectPatient, ID: 1}); !errors.Is(err, model.ErrForbidden) {
				t.Errorf("%s #%d as a patient: %v", act, i, err)
			}
		}
	}
}
