package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"careloop/app"
	"careloop/model"
	"careloop/testenv"
	"careloop/wxconfig"
	"careloop/wxsandbox"
)

// followingPatients makes n patients who follow the official account
// (linked followers, as the subscribe event leaves them), with tagID when
// it is not 0, and returns their ids and official-account openids.
func followingPatients(t *testing.T, a *app.App, prefix string, n int, tagID uint64, follow bool) ([]uint64, []string) {
	t.Helper()
	var ids []uint64
	var opens []string
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("%s-%d", prefix, i)
		p := model.Patient{Name: name, Source: "test"}
		if err := a.DB.Gorm().Create(&p).Error; err != nil {
			t.Fatal(err)
		}
		ids = append(ids, p.ID)
		if tagID != 0 {
			if err := a.DB.Gorm().Create(&model.PatientTag{PatientID: p.ID, TagID: tagID, AssignedAt: time.Now()}).Error; err != nil {
				t.Fatal(err)
			}
		}
		if follow {
			open := "oa-" + name
			pid := p.ID
			if err := a.DB.Gorm().Create(&model.Follower{OpenID: open, PatientID: &pid, Subscribed: true, SubscribedAt: time.Now()}).Error; err != nil {
				t.Fatal(err)
			}
			a.Sandbox.SetFollower(a.Cfg.OAAppID, open, true, "")
			opens = append(opens, open)
		}
	}
	return ids, opens
}

func waitMass(t *testing.T, a *app.App, tok string, id any, want string) response {
	t.Helper()
	return waitForStatus(t, a, tok, fmt.Sprintf("/api/admin/mass-sends/%v", id), want)
}

// A marketing user previews an article to their own WeChat, then sends it
// to a tag: followers who had their four mass messages this month are
// skipped, as are tagged patients who do not follow, and the result
// WeChat reports is shown.
func TestMassSendArticleToATag(t *testing.T) {
	forEachBackend(t, nil, func(t *testing.T, a *app.App) {
		h := a.Router
		admin := staffLogin(t, h, app.DemoAdminUser, app.DemoAdminPassword)
		mkt := newStaffOnce(t, a, admin, "mkt", "marketing")
		desk := newStaffOnce(t, a, admin, "desk", "frontdesk")
		tag := call(t, h, "POST", "/api/admin/tags", mkt, map[string]any{"name": "高血压随访", "category": "basic", "kind": "fact"})
		tagID := uint64(tag.Body["id"].(float64))
		_, opens := followingPatients(t, a, "hbp", 4, tagID, true)
		followingPatients(t, a, "hbp-away", 1, tagID, false)
		followingPatients(t, a, "other", 2, 0, true)
		// One of them had four mass messages this month already.
		month := time.Now().In(model.Shanghai).Format("2006-01")
		a.DB.Gorm().Create(&model.MassReceipt{OpenID: opens[3], Month: month, Count: 4})

		id := publishedArticle(t, a, mkt, "高血压患者冬季注意事项")
		// Preview to one's own WeChat first.
		a.Sandbox.SetFollower(a.Cfg.OAAppID, "oa-staff-li", true, "")
		if r := call(t, h, "POST", fmt.Sprintf("/api/admin/articles/%d/preview", id), mkt, map[string]any{"openid": "oa-staff-li"}); r.Status != 204 {
			t.Fatalf("preview: %d %s", r.Status, r.Raw)
		}
		previews := 0
		for _, s := range a.Sandbox.Delivered() {
			if s.API == wxsandbox.APIMassPreview && s.ToUser == "oa-staff-li" {
				previews++
			}
		}
		if previews != 1 {
			t.Fatalf("%d previews delivered", previews)
		}
		if r := call(t, h, "POST", fmt.Sprintf("/api/admin/articles/%d/preview", id), mkt, map[string]any{"openid": "oa-stranger"}); r.Status != 422 || r.ErrCode() != "wechat_refused" || !strings.Contains(string(r.Raw), "43004") {
			t.Fatalf("preview to a non-follower: %d %s", r.Status, r.Raw)
		}
		if r := call(t, h, "POST", fmt.Sprintf("/api/admin/articles/%d/preview", id), mkt, map[string]any{}); r.Status != 400 || r.ErrCode() != "invalid_preview" {
			t.Fatalf("preview to nobody: %d %s", r.Status, r.Raw)
		}

		// Bad requests.
		for _, body := range []map[string]any{
			{"article_id": id, "text": "你好", "target": map[string]any{"all": true}},
			{"target": map[string]any{"all": true}},
			{"text": "你好", "target": map[string]any{}},
			{"text": "你好", "target": map[string]any{"all": true, "tag_id": tagID}},
			{"text": "你好", "target": map[string]any{"tag_id": 987654}},
		} {
			if r := call(t, h, "POST", "/api/admin/mass-sends", mkt, body); r.Status != 400 || r.ErrCode() != "invalid_mass_send" {
				t.Errorf("%v: %d %s", body, r.Status, r.Raw)
			}
		}
		if r := call(t, h, "POST", "/api/admin/mass-sends", desk, map[string]any{"text": "你好", "target": map[string]any{"all": true}}); r.Status != 403 {
			t.Fatalf("the front desk mass-sends: %d", r.Status)
		}

		r := call(t, h, "POST", "/api/admin/mass-sends", mkt, map[string]any{"article_id": id, "target": map[string]any{"tag_id": tagID}})
		if r.Status != 201 || r.Body["status"] != "queued" {
			t.Fatalf("mass send: %d %s", r.Status, r.Raw)
		}
		done := waitMass(t, a, mkt, r.Body["id"], model.MassDone)
		skipped := done.Body["skipped"].(map[string]any)
		if done.Body["total"] != 3.0 || done.Body["sent"] != 3.0 || done.Body["filtered"] != 0.0 || done.Body["errors"] != 0.0 ||
			skipped["monthly_limit"] != 1.0 || skipped["not_following"] != 1.0 || done.Body["batches"] != 1.0 {
			t.Fatalf("result: %s", done.Raw)
		}
		// WeChat got one call with the three, under a clientmsgid.
		var call1 *wxsandbox.Sent
		for _, s := range a.Sandbox.Delivered() {
			if s.API == wxsandbox.APIMassSend {
				s := s
				call1 = &s
			}
		}
		var payload struct {
			ToUser      []string `json:"touser"`
			ClientMsgID string   `json:"clientmsgid"`
			MsgType     string   `json:"msgtype"`
		}
		if call1 == nil || json.Unmarshal(call1.Payload, &payload) != nil || len(payload.ToUser) != 3 || payload.ClientMsgID == "" || payload.MsgType != "mpnews" {
			t.Fatalf("the call: %+v", call1)
		}
		for _, o := range opens[:3] {
			if a.Sandbox.MassReceived(o) != 1 {
				t.Errorf("%s received %d", o, a.Sandbox.MassReceived(o))
			}
		}
		if a.Sandbox.MassReceived(opens[3]) != 0 {
			t.Error("the follower over the monthly limit was sent to")
		}
		var rc model.MassReceipt
		a.DB.Gorm().Where("open_id = ? AND month = ?", opens[0], month).Take(&rc)
		if rc.Count != 1 {
			t.Errorf("receipt: %+v", rc)
		}

		// A text to a list of patients.
		pids, _ := followingPatients(t, a, "list", 2, 0, true)
		r = call(t, h, "POST", "/api/admin/mass-sends", mkt, map[string]any{"text": "本周六体检中心照常开放", "target": map[string]any{"patient_ids": pids}})
		if done := waitMass(t, a, mkt, r.Body["id"], model.MassDone); done.Body["sent"] != 2.0 {
			t.Fatalf("text to patients: %s", done.Raw)
		}
		// One patient alone cannot be mass-sent to.
		r = call(t, h, "POST", "/api/admin/mass-sends", mkt, map[string]any{"text": "你好", "target": map[string]any{"patient_ids": pids[:1]}})
		if f := waitMass(t, a, mkt, r.Body["id"], model.MassFailed); !strings.Contains(f.Body["error"].(string), "至少需要 2 位") {
			t.Fatalf("one recipient: %s", f.Raw)
		}
		if l := call(t, h, "GET", "/api/admin/mass-sends", mkt, nil); len(l.Body["items"].([]any)) != 3 {
			t.Fatalf("list: %s", l.Raw)
		}
	})
}

// A worker killed after WeChat accepted a batch, before it wrote that
// down, holds the send until its lease ends; the next worker sends the
// batch again under the same clientmsgid, WeChat answers 45065 with the
// first msg_id, and nobody receives the message twice. Sends stay within
// WeChat's 60 requests a minute, and a result whose event never comes is
// asked for.
func TestMassSendResumesWithoutSendingTwice(t *testing.T) {
	for _, backend := range testenv.Backends() {
		t.Run(backend, func(t *testing.T) {
			a := newIdleApp(t, backend, nil)
			h := a.Router
			ctx := context.Background()
			admin := staffLogin(t, h, app.DemoAdminUser, app.DemoAdminPassword)
			tag := call(t, h, "POST", "/api/admin/tags", admin, map[string]any{"name": "年度复查", "category": "basic", "kind": "fact"})
			tagID := uint64(tag.Body["id"].(float64))
			_, opens := followingPatients(t, a, "re", 7, tagID, true)
			a.MassSends.BatchSize = 3
			r := call(t, h, "POST", "/api/admin/mass-sends", admin, map[string]any{"text": "年度复查提醒", "target": map[string]any{"tag_id": tagID}})
			id := uint64(r.Body["id"].(float64))
			if err := a.MassSends.Prepare(ctx, id); err != nil {
				t.Fatal(err)
			}
			var batches []model.MassBatch
			a.DB.Gorm().Where("mass_send_id = ?", id).Order("seq").Find(&batches)
			if len(batches) != 3 || batches[0].Count != 3 || batches[1].Count != 2 || batches[2].Count != 2 {
				t.Fatalf("batches: %+v", batches)
			}
			// The dead worker: it sent batch 1 and died holding the lease.
			var first []string
			_ = json.Unmarshal([]byte(batches[0].OpenIDs), &first)
			msgID, err := a.WX.MassSend(ctx, first, wxconfig.MassMessage{Text: "年度复查提醒"}, batches[0].ClientMsgID)
			if err != nil {
				t.Fatal(err)
			}
			a.DB.Gorm().Model(&model.MassSend{}).Where("id = ?", id).Updates(map[string]any{"claim_token": "dead", "lease_until": time.Now().Add(time.Hour)})
			calls := a.Sandbox.Calls(wxsandbox.APIMassSend)
			if err := a.MassSends.Work(ctx); err != nil {
				t.Fatal(err)
			}
			if a.Sandbox.Calls(wxsandbox.APIMassSend) != calls {
				t.Fatal("a send was taken over while its worker's lease held")
			}
			a.DB.Gorm().Model(&model.MassSend{}).Where("id = ?", id).Update("lease_until", time.Now().Add(-time.Second))
			if err := a.MassSends.Work(ctx); err != nil {
				t.Fatal(err)
			}
			a.Sandbox.WaitJobs()
			for _, o := range opens {
				if n := a.Sandbox.MassReceived(o); n != 1 {
					t.Errorf("%s received %d", o, n)
				}
			}
			var b1 model.MassBatch
			a.DB.Gorm().Where("id = ?", batches[0].ID).Take(&b1)
			if b1.MsgID != msgID {
				t.Errorf("batch 1 has msg %s, WeChat sent %s", b1.MsgID, msgID)
			}
			m := waitMassModel(t, a, id, model.MassDone)
			if m.Sent != 7 || m.BatchesDone != 3 {
				t.Fatalf("after resuming: %+v", m)
			}
		})
	}
}

// Mass sends keep within WeChat's 60 requests a minute: a send of 62
// batches sends 60 and waits for the next minute.
func TestMassSendKeepsToSixtyAMinute(t *testing.T) {
	for _, backend := range testenv.Backends() {
		t.Run(backend, func(t *testing.T) {
			a := newIdleApp(t, backend, nil)
			ctx := context.Background()
			// One minute for WeChat and careloop alike, whatever the wall clock.
			minute := time.Date(2026, 12, 7, 10, 30, 5, 0, model.Shanghai)
			a.Sandbox.SetClock(func() time.Time { return minute })
			a.MassSends.SetClock(func() time.Time { return minute })
			a.MassSends.BatchSize = 3
			admin := staffLogin(t, a.Router, app.DemoAdminUser, app.DemoAdminPassword)
			pids, _ := followingPatients(t, a, "many", 186, 0, true)
			r := call(t, a.Router, "POST", "/api/admin/mass-sends", admin, map[string]any{"text": "感恩回馈", "target": map[string]any{"patient_ids": pids}})
			id := uint64(r.Body["id"].(float64))
			for i := 0; i < 3; i++ {
				if err := a.MassSends.Work(ctx); err != nil {
					t.Fatal(err)
				}
			}
			if n := a.Sandbox.Calls(wxsandbox.APIMassSend); n != 60 {
				t.Fatalf("%d calls within the minute", n)
			}
			for _, s := range a.Sandbox.Sent() {
				if s.ErrCode != 0 {
					t.Fatalf("WeChat refused a call: %+v", s)
				}
			}
			var pending int64
			a.DB.Gorm().Model(&model.MassBatch{}).Where("mass_send_id = ? AND status = ?", id, model.BatchPending).Count(&pending)
			if pending != 2 {
				t.Fatalf("%d batches wait for the next minute, want 2", pending)
			}
			next := minute.Add(time.Minute)
			a.Sandbox.SetClock(func() time.Time { return next })
			a.MassSends.SetClock(func() time.Time { return next })
			if err := a.MassSends.Work(ctx); err != nil {
				t.Fatal(err)
			}
			if n := a.Sandbox.Calls(wxsandbox.APIMassSend); n != 62 {
				t.Fatalf("%d calls after the next minute began", n)
			}
		})
	}
}

func waitMassModel(t *testing.T, a *app.App, id uint64, want string) model.MassSend {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		var m model.MassSend
		a.DB.Gorm().Where("id = ?", id).Take(&m)
		if m.Status == want {
			return m
		}
		if time.Now().After(deadline) {
			var bs []model.MassBatch
			a.DB.Gorm().Where("mass_send_id = ?", id).Find(&bs)
			var rs []model.MassJobResult
			a.DB.Gorm().Find(&rs)
			t.Logf("its batches: %+v; results kept early: %+v", bs, rs)
			t.Fatalf("mass send %d never became %s: %+v", id, want, m)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// When MASSSENDJOBFINISH never comes, mass/get is asked.
func TestMassSendPolledWhenTheEventNeverComes(t *testing.T) {
	forEachBackend(t, func(c *app.Config) { c.PublishPoll = 200 * time.Millisecond }, func(t *testing.T, a *app.App) {
		h := a.Router
		admin := staffLogin(t, h, app.DemoAdminUser, app.DemoAdminPassword)
		pids, _ := followingPatients(t, a, "poll", 3, 0, true)
		call(t, h, "POST", "/sandbox/wechat/events/withhold", "", map[string]any{"event": "MASSSENDJOBFINISH", "count": 1})
		r := call(t, h, "POST", "/api/admin/mass-sends", admin, map[string]any{"text": "体检中心春节安排", "target": map[string]any{"patient_ids": pids}})
		done := waitMass(t, a, admin, r.Body["id"], model.MassDone)
		if a.Sandbox.Calls(wxsandbox.APIMassGet) == 0 || done.Body["sent"] != 3.0 {
			t.Fatalf("not asked: %s", done.Raw)
		}
	})
}

// A text to every follower goes in one sendall call (WeChat reaches its
// followers itself); careloop counts the month for the followers it knows.
func TestMassSendToAllFollowers(t *testing.T) {
	forEachBackend(t, nil, func(t *testing.T, a *app.App) {
		h := a.Router
		admin := staffLogin(t, h, app.DemoAdminUser, app.DemoAdminPassword)
		_, opens := followingPatients(t, a, "everyone", 3, 0, true)
		r := call(t, h, "POST", "/api/admin/mass-sends", admin, map[string]any{"text": "元旦假期体检中心正常开放", "target": map[string]any{"all": true}})
		done := waitMass(t, a, admin, r.Body["id"], model.MassDone)
		if done.Body["batches"] != 1.0 || done.Body["sent"].(float64) < 3 || a.Sandbox.Calls(wxsandbox.APIMassSendAll) != 1 {
			t.Fatalf("to all: %s", done.Raw)
		}
		for _, o := range opens {
			if a.Sandbox.MassReceived(o) != 1 {
				t.Errorf("%s received %d", o, a.Sandbox.MassReceived(o))
			}
		}
		var n int64
		if err := a.DB.Gorm().Model(&model.MassReceipt{}).Where("open_id IN ?", opens).Count(&n).Error; err != nil || n != 3 {
			t.Fatalf("receipts: %d %v", n, err)
		}
	})
}
