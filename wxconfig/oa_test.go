package wxconfig_test

import (
	"bytes"
	"context"
	"image"
	"image/jpeg"
	"strings"
	"testing"
	"time"

	"github.com/silenceper/wechat/v2/officialaccount/broadcast"
	"github.com/silenceper/wechat/v2/officialaccount/draft"
	"github.com/sirupsen/logrus"

	"careloop/coord"
	"careloop/wxconfig"
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

// WeChat's refusals of publishing and mass sends reach careloop as errors
// with their codes: a WebP or a picture of 1 MB for uploadimg, a thumb over
// 64 KB, a draft without its thumb, a title over 32 characters, a mass send
// to one openid; and a batch sent twice under one clientmsgid answers the
// first msg_id.
func TestPublishingRefusals(t *testing.T) {
	r := newRig(t, coord.NewMemory(), 5*time.Second)
	ctx := context.Background()
	webp := append([]byte("RIFF\x24\x00\x00\x00WEBPVP8 "), make([]byte, 32)...)
	if _, err := r.wx.UploadArticleImage(ctx, "a.webp", webp); wxconfig.CodeOf(err) != 40005 {
		t.Fatalf("WebP: %v", err)
	}
	var big bytes.Buffer
	big.Write([]byte("\x89PNG\r\n\x1a\n"))
	big.Write(make([]byte, 1<<20))
	if _, err := r.wx.UploadArticleImage(ctx, "big.png", big.Bytes()); wxconfig.CodeOf(err) != 40009 {
		t.Fatalf("1 MB: %v", err)
	}
	var jpg bytes.Buffer
	_ = jpeg.Encode(&jpg, image.NewRGBA(image.Rect(0, 0, 60, 40)), nil)
	fat := append(append([]byte{}, jpg.Bytes()...), make([]byte, 65<<10)...)
	if _, err := r.wx.AddThumb(ctx, "fat.jpg", fat); wxconfig.CodeOf(err) != 40009 {
		t.Fatalf("thumb over 64 KB: %v", err)
	}
	thumb, err := r.wx.AddThumb(ctx, "ok.jpg", jpg.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.wx.AddDraft(ctx, []wxconfig.DraftArticle{{Title: "无封面", Content: "<p>x</p>"}}); wxconfig.CodeOf(err) != 44003 {
		t.Fatalf("draft without thumb: %v", err)
	}
	if _, err := r.wx.AddDraft(ctx, []wxconfig.DraftArticle{{Title: strings.Repeat("长", 33), Content: "<p>x</p>", ThumbMediaID: thumb}}); wxconfig.CodeOf(err) != 45003 {
		t.Fatalf("long title: %v", err)
	}
	if _, err := r.wx.MassSend(ctx, []string{"oa-one"}, wxconfig.MassMessage{Text: "hi"}, "c1"); wxconfig.CodeOf(err) != 40130 {
		t.Fatalf("one openid: %v", err)
	}
	first, err := r.wx.MassSend(ctx, []string{"oa-a", "oa-b"}, wxconfig.MassMessage{Text: "hi"}, "c2")
	if err != nil {
		t.Fatal(err)
	}
	again, err := r.wx.MassSend(ctx, []string{"oa-a", "oa-b"}, wxconfig.MassMessage{Text: "hi"}, "c2")
	if err != nil || again != first {
		t.Fatalf("the same clientmsgid again: %q %v, first %q", again, err, first)
	}
}
