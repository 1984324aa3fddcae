package wxconfig_test

import (
	"bytes"
	"context"
	"image"
	"image/jpeg"
	"testing"
	"time"

	"github.com/silenceper/wechat/v2/officialaccount/broadcast"
	"github.com/silenceper/wechat/v2/officialaccount/draft"
	"github.com/sirupsen/logrus"

	"careloop/coord"
	"careloop/wxsandbox"
)

// The official-account endpoints careloop will drive (menus, articles, tags,
// mass sends) answer the SDK in the shapes it parses.
func TestOfficialAccountEndpointsThroughSDK(t *testing.T) {
	r := newRig(t, coord.NewMemory(), 5*time.Second)
	oa := r.wx.OA
	do := func(op string, fn func() error) {
		t.Helper()
		if err := r.wx.DoOA(context.Background(), op, func(context.Context) error { return fn() }); err != nil {
			t.Fatalf("%s: %v", op, err)
		}
	}
	do("menu", func() error {
		return oa.GetMenu().SetMenuByJSON(`{"button":[{"type":"click","name":"预约体检","key":"BOOK"},{"name":"更多","sub_button":[{"type":"view","name":"报告","url":"https://example.org"}]}]}`)
	})
	do("conditional menu", func() error {
		return oa.GetMenu().AddConditionalByJSON(`{"button":[{"type":"click","name":"VIP","key":"VIP"}],"matchrule":{"tag_id":"100"}}`)
	})
	if err := oa.GetMenu().SetMenuByJSON(`{"button":[{"name":"1"},{"name":"2"},{"name":"3"},{"name":"4"}]}`); err == nil {
		t.Fatal("four top-level buttons accepted")
	}
	var tagID int32
	do("create tag", func() error {
		tag, err := oa.GetUser().CreateTag("高血压随访")
		if err == nil {
			tagID = tag.ID
		}
		return err
	})
	do("batch tag", func() error { return oa.GetUser().BatchTag([]string{"oa-alice", "oa-bob"}, tagID) })
	do("list by tag", func() error {
		list, err := oa.GetUser().OpenIDListByTag(tagID)
		if err == nil && list.Count != 2 {
			t.Errorf("tag members: %+v", list)
		}
		return err
	})
	// The cover is thumb material, through careloop's own client.
	var cover bytes.Buffer
	_ = jpeg.Encode(&cover, image.NewRGBA(image.Rect(0, 0, 90, 60)), nil)
	thumb, err := r.wx.AddThumb(context.Background(), "cover.jpg", cover.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	var mediaID string
	do("add draft", func() error {
		var err error
		mediaID, err = oa.GetDraft().AddDraft([]*draft.Article{{Title: "冬季体检须知", Content: "<p>空腹</p>", ThumbMediaID: thumb}})
		return err
	})
	do("mass send by tag", func() error {
		res, err := oa.GetBroadcast().SendNews(&broadcast.User{TagID: int64(tagID)}, mediaID, true)
		if err == nil && res.MsgID == 0 {
			t.Error("no msg_id")
		}
		return err
	})
	sent := r.sb.Delivered()
	if len(sent) != 1 || sent[0].API != wxsandbox.APIMassSendAll {
		t.Fatalf("mass send not recorded: %+v", sent)
	}
	if logrus.GetLevel() > logrus.ErrorLevel {
		t.Fatal("the SDK logs at debug level (it would log decrypted patient messages)")
	}
}
