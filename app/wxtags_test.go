package app_test

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"testing"

	"careloop/app"
	"careloop/model"
	"careloop/testenv"
	"careloop/wxsandbox"
)

// A careloop tag mirrored as a WeChat user tag: its followers are tagged at
// WeChat, one who loses the tag is untagged, a round with nothing changed
// calls WeChat for nothing (the state is in the database, so a restart
// changes nothing either), and a follower who holds WeChat's 20 tags is
// counted, not retried into a failure of the rest.
func TestWeChatTagsMirrorCareloopTags(t *testing.T) {
	for _, backend := range testenv.Backends() {
		t.Run(backend, func(t *testing.T) {
			a := newIdleApp(t, backend, nil)
			h := a.Router
			ctx := context.Background()
			admin := staffLogin(t, h, app.DemoAdminUser, app.DemoAdminPassword)
			mkt := newStaffOnce(t, a, admin, "mkt", "marketing")
			desk := newStaffOnce(t, a, admin, "desk", "frontdesk")
			tag := call(t, h, "POST", "/api/admin/tags", mkt, map[string]any{"name": "糖尿病随访", "category": "basic", "kind": "fact"})
			tagID := uint64(tag.Body["id"].(float64))
			pids, opens := followingPatients(t, a, "sugar", 60, tagID, true)
			// One of them holds 20 WeChat tags already (set in WeChat's own back office).
			for i := 0; i < 20; i++ {
				a.Sandbox.TagUser(opens[59], fmt.Sprintf("后台标签%d", i))
			}
			if r := call(t, h, "PUT", fmt.Sprintf("/api/admin/tags/%d/wechat", tagID), desk, map[string]any{"mirror": true}); r.Status != 403 {
				t.Fatalf("the front desk mirrors tags: %d", r.Status)
			}
			r := call(t, h, "PUT", fmt.Sprintf("/api/admin/tags/%d/wechat", tagID), mkt, map[string]any{"mirror": true})
			if r.Status != 200 || r.Body["mirrored"] != true {
				t.Fatalf("mirror: %d %s", r.Status, r.Raw)
			}
			wxID := int(r.Body["wx_tag_id"].(float64))
			if err := a.WxTags.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			got := a.Sandbox.TaggedWith(wxID)
			sort.Strings(got)
			want := slices.Clone(opens[:59])
			sort.Strings(want)
			if !slices.Equal(got, want) {
				t.Fatalf("WeChat has %d under the tag, want the 59 who can take it", len(got))
			}
			st := call(t, h, "GET", "/api/admin/wechat-tags", mkt, nil).Body["items"].([]any)[0].(map[string]any)
			if st["members"] != 59.0 || st["over_limit"] != 1.0 || st["pending"] != 0.0 || st["synced_at"] == nil || st["tag_name"] != "糖尿病随访" {
				t.Fatalf("state: %v", st)
			}
			// Nothing changed: nothing is sent.
			calls := a.Sandbox.Calls(wxsandbox.APITagsBatchTagging) + a.Sandbox.Calls(wxsandbox.APITagsBatchUntagging)
			a.DB.Gorm().Where("open_id = ?", opens[59]).Delete(&model.Follower{}) // the over-limit follower leaves
			if err := a.WxTags.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			if n := a.Sandbox.Calls(wxsandbox.APITagsBatchTagging) + a.Sandbox.Calls(wxsandbox.APITagsBatchUntagging); n != calls {
				t.Fatalf("%d calls for a round with nothing to do", n-calls)
			}
			// A patient loses the tag: untagged at WeChat.
			if r := call(t, h, "DELETE", fmt.Sprintf("/api/admin/patients/%d/tags/%d", pids[0], tagID), mkt, nil); r.Status/100 != 2 {
				t.Fatalf("untag: %d %s", r.Status, r.Raw)
			}
			if err := a.WxTags.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			if got := a.Sandbox.TaggedWith(wxID); len(got) != 58 || slices.Contains(got, opens[0]) {
				t.Fatalf("after the patient lost the tag WeChat has %d", len(got))
			}
			// Stopping deletes the WeChat tag.
			if r := call(t, h, "PUT", fmt.Sprintf("/api/admin/tags/%d/wechat", tagID), mkt, map[string]any{"mirror": false}); r.Status != 200 || r.Body["mirrored"] != false {
				t.Fatalf("stop: %d %s", r.Status, r.Raw)
			}
			if got := a.Sandbox.TaggedWith(wxID); len(got) != 0 {
				t.Fatalf("the WeChat tag still holds %d", len(got))
			}
			if l := call(t, h, "GET", "/api/admin/wechat-tags", mkt, nil); len(l.Body["items"].([]any)) != 0 {
				t.Fatalf("still listed: %s", l.Raw)
			}
		})
	}
}
