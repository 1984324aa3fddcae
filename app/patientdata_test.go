package app_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"careloop/app"
	"careloop/model"
	"careloop/service"
)

// richPatient gives patient pid (token tok) a row in as many tables of the
// registry as the product can: bookings, a completed checkup with its
// survey answer and report, points and a coupon, a conversation, credits, a
// complaint, family, consents and archive, tags, a follower, preferences.
func richPatient(t *testing.T, a *app.App, tok string, pid uint64, admin, desk string) {
	t.Helper()
	h := a.Router
	ctx := context.Background()
	must := func(r response, want int, what string) response {
		t.Helper()
		if r.Status/100 != 2 || want != 0 && r.Status != want {
			t.Fatalf("%s: %d %s", what, r.Status, r.Raw)
		}
		return r
	}
	must(call(t, h, "POST", "/api/mp/me/consents", tok, map[string]any{"kind": "health_data", "version": "v1", "granted": true}), 0, "consent")
	must(call(t, h, "PUT", "/api/mp/me/health", tok, map[string]any{"allergies": []string{"青霉素"}}), 0, "archive")
	must(call(t, h, "POST", "/api/mp/family", tok, map[string]any{"name": "李妈妈", "relation": "parent", "gender": "female", "birth_date": "1955-05-05"}), 201, "family")
	sl := testSlot(t, a, "06:00", 5)
	must(bookCall(t, h, tok, "merge-k1", map[string]any{"package_id": anyPackage(t, a).ID, "slot_id": sl.ID}), 201, "book")
	bid := completeCheckup(t, a, pid, "05:00", desk)
	inv := call(t, h, "GET", "/api/mp/surveys/invites", tok, nil).Body["items"].([]any)
	if len(inv) != 1 {
		t.Fatalf("invitation: %v", inv)
	}
	iid := uint64(inv[0].(map[string]any)["id"].(float64))
	must(call(t, h, "POST", fmt.Sprintf("/api/mp/surveys/invites/%d/answer", iid), tok,
		map[string]any{"answers": map[string]any{"overall": 5, "nps": 9, "best": []string{"采血"}, "comment": "很好"}}), 201, "answer")
	var b model.Booking
	a.DB.Gorm().Where("id = ?", bid).Take(&b)
	must(ingest(t, h, "peis", peisSecret, time.Now(), reportBody(fmt.Sprintf("R-%d", pid), b.Code, "", "12.5", true, true)), 201, "report")
	grantPoints(t, a, pid, 300)
	reward, err := a.Points.SaveReward(ctx, service.System, model.Reward{Name: "体检代金券 50 元", Kind: model.RewardCoupon, CostPoints: 100, Stock: 10, CouponValueFen: 5000, Active: true})
	if err != nil {
		t.Fatal(err)
	}
	must(redeemCall(t, a, tok, reward.ID, fmt.Sprintf("redeem-%d", pid)), 200, "redeem")
	_, cv := startChat(t, a, tok, map[string]any{"topic": "报告解读"})
	must(call(t, h, "POST", fmt.Sprintf("/api/mp/conversations/%d/messages", uint64(cv["id"].(float64))), tok, map[string]any{"content": "白细胞偏高要紧吗"}), 201, "message")
	if code, ref := uploadImage(t, a, tok, append([]byte("\x89PNG\r\n\x1a\n"), make([]byte, 64)...)); code == 201 {
		must(call(t, h, "POST", fmt.Sprintf("/api/mp/conversations/%d/messages", uint64(cv["id"].(float64))), tok, map[string]any{"kind": "image", "content": ref}), 201, "image")
	} else {
		t.Fatalf("upload: %d", code)
	}
	must(call(t, h, "POST", "/api/mp/subscriptions", tok, map[string]any{"results": map[string]string{"sbx-tmpl-booking-confirmed": "accept"}}), 200, "subscribe")
	must(call(t, h, "PUT", "/api/mp/notification-preferences", tok, map[string]any{"care": false}), 0, "preferences")
	// A scoring run gives the patient (a completed checkup) a value tier.
	must(call(t, h, "POST", "/api/admin/rfm/runs", admin, nil), 202, "rfm run")
	eventually(t, 15*time.Second, "the patient's RFM score", func() bool {
		var n int64
		if err := a.DB.Gorm().Model(&model.RFMScore{}).Where("patient_id = ?", pid).Count(&n).Error; err != nil {
			t.Fatal(err)
		}
		return n > 0
	})
	art := publishedArticle(t, a, admin, fmt.Sprintf("体检须知 %d", pid))
	must(call(t, h, "GET", fmt.Sprintf("/api/mp/articles/%d", art), tok, nil), 200, "read")
	must(call(t, h, "POST", fmt.Sprintf("/api/mp/articles/%d/shares", art), tok, map[string]any{"scene": "timeline"}), 204, "share")
	must(call(t, h, "POST", "/api/mp/complaints", tok, map[string]any{"category": "environment", "content": "候诊区太冷了，空调开得太低"}), 201, "complaint")
	tag := must(call(t, h, "POST", "/api/admin/tags", newStaffOnce(t, a, admin, "mkt", "marketing"), map[string]any{"name": "高血压", "category": "basic", "kind": "fact"}), 201, "tag")
	if err := a.DB.Gorm().Create(&model.PatientTag{PatientID: pid, TagID: uint64(tag.Body["id"].(float64)), AssignedAt: time.Now()}).Error; err != nil {
		t.Fatal(err)
	}
	if err := a.DB.Gorm().Create(&model.Follower{OpenID: fmt.Sprintf("oa-%d", pid), PatientID: &pid, Subscribed: true, SubscribedAt: time.Now()}).Error; err != nil {
		t.Fatal(err)
	}
	if err := a.DB.Gorm().Create(&model.OAEvent{DedupeKey: fmt.Sprintf("ev-%d", pid), OpenID: fmt.Sprintf("oa-%d", pid), Kind: "text", Content: "你好"}).Error; err != nil {
		t.Fatal(err)
	}
	// A campaign reached them.
	if err := a.DB.Gorm().Create(&model.CampaignRecipient{CampaignID: 1_000_000 + pid, PatientID: pid, Variant: "A", CreatedAt: time.Now()}).Error; err != nil {
		t.Fatal(err)
	}
}

var staffTokens = map[*app.App]map[string]string{}

// newStaffOnce creates staff member username once per app.
func newStaffOnce(t *testing.T, a *app.App, admin, username, role string) string {
	if staffTokens[a] == nil {
		staffTokens[a] = map[string]string{}
	}
	if tok, ok := staffTokens[a][username]; ok {
		return tok
	}
	tok := newStaff(t, a, admin, username, role)
	staffTokens[a][username] = tok
	return tok
}

func sumBalance(a *app.App, ids ...uint64) (bal, growth int64) {
	for _, id := range ids {
		var acc model.PointsAccount
		a.DB.Gorm().Where("patient_id = ?", id).Take(&acc)
		bal += acc.Balance
		growth += acc.Growth
	}
	return
}

func sumCredits(a *app.App, ids ...uint64) (n int64) {
	a.DB.Gorm().Model(&model.SubscribeCredit{}).Where("patient_id IN ?", ids).Select("COALESCE(SUM(credits), 0)").Scan(&n)
	return
}

// A patient who used the mini-program for a while binds the phone of a
// patient imported from the HIS: everything moves to the one surviving
// record, nothing refers to the removed id, and totals are kept.
func TestMergeMovesEverything(t *testing.T) {
	forEachBackend(t, nil, func(t *testing.T, a *app.App) {
		h := a.Router
		ctx := context.Background()
		admin := staffLogin(t, h, app.DemoAdminUser, app.DemoAdminPassword)
		desk := newStaffOnce(t, a, admin, "desk", "frontdesk")
		key, _ := a.Cfg.DataKeyBytes()
		sealer, _ := service.NewSealer(key)
		his, hash := "HIS-7001", sealer.Hash("13800138071")
		owner := model.Patient{HISID: &his, Name: "王芳", PhoneHash: &hash, PhoneEnc: sealer.Seal([]byte("13800138071")), Gender: "female"}
		if err := a.DB.Gorm().Create(&owner).Error; err != nil {
			t.Fatal(err)
		}
		// The imported record has a little of its own: points, a credit of
		// the same template, the same tag.
		grantPoints(t, a, owner.ID, 40)
		a.DB.Gorm().Create(&model.SubscribeCredit{PatientID: owner.ID, TemplateID: "sbx-tmpl-booking-confirmed", Credits: 2})

		tok, self := login(t, h, "dev:wangfang-merge")
		richPatient(t, a, tok, self, admin, desk)
		var tagID uint64
		a.DB.Gorm().Model(&model.PatientTag{}).Where("patient_id = ?", self).Pluck("tag_id", &tagID)
		a.DB.Gorm().Create(&model.PatientTag{PatientID: owner.ID, TagID: tagID, AssignedAt: time.Now()})

		pd := service.NewPatientData(a.DB, a.Sealer, nil, a.Bookings, a.Log, nil)
		before, err := pd.CountRows(ctx, self)
		if err != nil {
			t.Fatal(err)
		}
		ownerBefore, _ := pd.CountRows(ctx, owner.ID)
		for _, table := range []string{"bookings", "reports", "report_versions", "points_entries", "coupons", "survey_invites", "survey_responses",
			"complaints", "complaint_steps", "conversations", "chat_messages", "subscribe_credits", "followers", "consents", "health_archives",
			"family_members", "notifications", "patient_tags", "notify_preferences", "sessions", "points_accounts", "audit_logs", "oa_events"} {
			if before[table] == 0 {
				t.Fatalf("the test patient has no %s to merge: %v", table, before)
			}
		}
		bal, growth := sumBalance(a, self, owner.ID)
		credits := sumCredits(a, self, owner.ID)

		r := call(t, h, "POST", "/api/mp/phone", tok, map[string]string{"code": "dev:13800138071"})
		if r.Status != 200 || uint64(r.Body["id"].(float64)) != owner.ID {
			t.Fatalf("bind: %d %s", r.Status, r.Raw)
		}
		after, _ := pd.CountRows(ctx, self)
		for table, n := range after {
			if n != 0 {
				t.Errorf("%d rows of %s still refer to the removed patient", n, table)
			}
		}
		merged, _ := pd.CountRows(ctx, owner.ID)
		combined := map[string]int64{"patients": 1, "points_accounts": 1, "subscribe_credits": 1, "patient_tags": 1, "health_archives": 1, "patient_visits": 1,
			"points_entries": before["points_entries"] + ownerBefore["points_entries"] + 1}
		for table, n := range merged {
			want := before[table] + ownerBefore[table]
			if c, ok := combined[table]; ok {
				want = c
			}
			if n != want {
				t.Errorf("%s: %d rows after the merge, want %d (self %d, imported %d)", table, n, want, before[table], ownerBefore[table])
			}
		}
		if b2, g2 := sumBalance(a, owner.ID); b2 != bal || g2 != growth {
			t.Errorf("points %d/%d after, %d/%d before", b2, g2, bal, growth)
		}
		if c := sumCredits(a, owner.ID); c != credits {
			t.Errorf("credits %d after, %d before", c, credits)
		}
		var ledger int64
		a.DB.Gorm().Model(&model.PointsEntry{}).Where("patient_id = ?", owner.ID).Select("SUM(amount)").Scan(&ledger)
		if ledger != bal {
			t.Errorf("the ledger sums to %d, the balance is %d", ledger, bal)
		}
		// What the patient sees, under the merged identity.
		for path, n := range map[string]int{"/api/mp/bookings": 2, "/api/mp/coupons": 1, "/api/mp/conversations": 1, "/api/mp/complaints": 1,
			"/api/mp/family": 1, "/api/mp/reports": 1} {
			got := call(t, h, "GET", path, tok, nil)
			if items, _ := got.Body["items"].([]any); got.Status != 200 || len(items) != n {
				t.Errorf("%s after the merge: %d %s", path, got.Status, got.Raw)
			}
		}
		if p := call(t, h, "GET", "/api/mp/points", tok, nil); p.Body["balance"] != float64(bal) {
			t.Errorf("points after the merge: %s", p.Raw)
		}
		if me := call(t, h, "GET", "/api/mp/me/health", tok, nil); fmt.Sprint(me.Body["allergies"]) != "[青霉素]" {
			t.Errorf("archive after the merge: %s", me.Raw)
		}
		// The booking still counts as the person's: another on the same day is refused.
		var bk model.Booking
		a.DB.Gorm().Where("patient_id = ? AND status = ?", owner.ID, "booked").Take(&bk)
		if bk.PersonKey != fmt.Sprintf("p:%d", owner.ID) {
			t.Errorf("booking person after the merge: %q", bk.PersonKey)
		}
	})
}

// The export covers every kind of data in the registry, and erasure
// follows each table's rule.
func TestExportAndEraseFollowTheRegistry(t *testing.T) {
	forEachBackend(t, nil, func(t *testing.T, a *app.App) {
		h := a.Router
		ctx := context.Background()
		admin := staffLogin(t, h, app.DemoAdminUser, app.DemoAdminPassword)
		desk := newStaffOnce(t, a, admin, "desk", "frontdesk")
		tok, pid := login(t, h, "dev:exporter")
		richPatient(t, a, tok, pid, admin, desk)
		// A staff read puts a line in the access log.
		call(t, h, "GET", fmt.Sprintf("/api/admin/patients/%d", pid), admin, nil)

		ex := call(t, h, "GET", "/api/mp/me/export", tok, nil)
		if ex.Status != 200 {
			t.Fatalf("export: %d %s", ex.Status, ex.Raw)
		}
		for _, e := range model.PatientRegistry() {
			if e.Export == "" {
				continue
			}
			v, ok := ex.Body[e.Export]
			if !ok || v == nil {
				t.Errorf("the export lacks %q (%T)", e.Export, e.Model)
				continue
			}
			if l, isList := v.([]any); isList && len(l) == 0 {
				t.Errorf("the export's %q is empty although the patient has such data", e.Export)
			}
		}
		if pts := ex.Body["points"].(map[string]any); pts["balance"] != float64(balance(a, pid)) {
			t.Errorf("exported points: %v", pts)
		}

		pd := service.NewPatientData(a.DB, a.Sealer, nil, a.Bookings, a.Log, nil)
		before, _ := pd.CountRows(ctx, pid)
		var slotBefore model.Slot
		var open model.Booking
		a.DB.Gorm().Where("patient_id = ? AND status = ?", pid, "booked").Take(&open)
		a.DB.Gorm().Where("id = ?", open.SlotID).Take(&slotBefore)

		var image string
		a.DB.Gorm().Model(&model.ChatMessage{}).Where("image_key IS NOT NULL AND conversation_id IN (SELECT id FROM conversations WHERE patient_id = ?)", pid).Pluck("image_key", &image)
		imageStored := func() bool {
			if a.DB.Dialect() == "mysql" {
				var n int64
				a.DB.Gorm().Model(&model.FileChunk{}).Where("`key` = ?", "chat/images/"+image).Count(&n)
				return n > 0
			}
			_, err := os.Stat(filepath.Join(a.Cfg.DataDir, "files", "chat", "images", image))
			return err == nil
		}
		if image == "" || !imageStored() {
			t.Fatalf("the test patient's chat image is not stored (%q)", image)
		}
		if r := call(t, h, "POST", "/api/mp/me/erase", tok, map[string]any{"confirm": true}); r.Status != 204 {
			t.Fatalf("erase: %d %s", r.Status, r.Raw)
		}
		after, _ := pd.CountRows(ctx, pid)
		for _, e := range model.PatientRegistry() {
			table := a.DB.TableOf(e.Model)
			switch e.Erase {
			case model.EraseDelete, model.EraseUnlink:
				if table != "tasks" && after[table] != 0 {
					t.Errorf("%s: %d rows left after erasure", table, after[table])
				}
			case model.EraseKeep, model.EraseRetain, model.EraseAnonymise:
				if after[table] != before[table] && table != "tasks" {
					t.Errorf("%s: %d rows after erasure, %d before (kept by rule)", table, after[table], before[table])
				}
			}
		}
		var pt model.Patient
		a.DB.Gorm().Where("id = ?", pid).Take(&pt)
		if pt.Name != "已注销用户" || pt.OpenID != nil || pt.PhoneEnc != nil || pt.RetainedEnc == nil || pt.RetainedUntil == nil ||
			pt.RetainedUntil.Before(time.Now().AddDate(14, 11, 0)) {
			t.Errorf("erased patient row: %+v", pt)
		}
		var rep model.Report
		a.DB.Gorm().Where("patient_id = ?", pid).Take(&rep)
		if rep.RetainedUntil == nil {
			t.Error("the report is not sealed for retention")
		}
		// Sealed: staff no longer reach it, nor its critical-value task.
		if r := call(t, h, "GET", fmt.Sprintf("/api/admin/reports/%d", rep.ID), admin, nil); r.Status != 404 {
			t.Errorf("staff read a retained report: %d", r.Status)
		}
		tasks := call(t, h, "GET", "/api/admin/tasks", admin, nil).Body["items"].([]any)
		for _, tk := range tasks {
			if uint64(tk.(map[string]any)["patient_id"].(float64)) == pid {
				t.Errorf("a task of the erased patient is still listed: %v", tk)
			}
		}
		var c model.Complaint
		a.DB.Gorm().Where("patient_id = ?", pid).Take(&c)
		var sr model.SurveyResponse
		a.DB.Gorm().Where("patient_id = ?", pid).Take(&sr)
		if c.Content == "候诊区太冷了，空调开得太低" || sr.Comment != "" || sr.NPS == nil {
			t.Errorf("texts kept after erasure: complaint %q, survey comment %q nps %v", c.Content, sr.Comment, sr.NPS)
		}
		var bk model.Booking
		a.DB.Gorm().Where("id = ?", open.ID).Take(&bk)
		var slotAfter model.Slot
		a.DB.Gorm().Where("id = ?", open.SlotID).Take(&slotAfter)
		if bk.Status != model.BookingCancelled || slotAfter.Booked != slotBefore.Booked-1 {
			t.Errorf("a booking still to come after erasure: %s, seats %d -> %d", bk.Status, slotBefore.Booked, slotAfter.Booked)
		}
		if r := call(t, h, "GET", "/api/mp/me", tok, nil); r.Status != 401 {
			t.Errorf("the token still works after erasure: %d", r.Status)
		}
		if imageStored() {
			t.Error("the chat image's file outlived the erasure")
		}
		// Excluded from processing: a year on, no annual re-check is written for them.
		later := time.Now().In(model.Shanghai).AddDate(1, 1, 0)
		later = time.Date(later.Year(), later.Month(), later.Day(), 10, 0, 0, 0, model.Shanghai)
		if err := a.Bookings.AnnualRecheck(ctx, later); err != nil {
			t.Fatal(err)
		}
		var care int64
		a.DB.Gorm().Model(&model.Notification{}).Where("patient_id = ?", pid).Count(&care)
		if care != 0 {
			t.Errorf("%d notices written for an erased patient", care)
		}
	})
}
