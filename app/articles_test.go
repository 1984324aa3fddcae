package app_test

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/gif"
	"image/png"
	"math/rand"
	"mime/multipart"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"careloop/app"
	"careloop/model"
	"careloop/wxsandbox"
)

// testPicture draws a w×h image; noisy pictures compress badly (large files).
func testPicture(w, h int, noisy bool) image.Image {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	r := rand.New(rand.NewSource(int64(w*h + 7)))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			c := color.RGBA{uint8(x * 255 / w), uint8(y * 255 / h), 160, 255}
			if noisy {
				c = color.RGBA{uint8(r.Intn(256)), uint8(r.Intn(256)), uint8(r.Intn(256)), 255}
			}
			img.Set(x, y, c)
		}
	}
	return img
}

func pngBytes(img image.Image) []byte {
	var b bytes.Buffer
	_ = png.Encode(&b, img)
	return b.Bytes()
}

func gifBytes(img image.Image) []byte {
	var b bytes.Buffer
	_ = gif.Encode(&b, img, nil)
	return b.Bytes()
}

// uploadMedia posts an image to /api/admin/files as the console does.
func uploadMedia(t *testing.T, a *app.App, tok string, data []byte) response {
	t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, _ := mw.CreateFormFile("file", "picture")
	_, _ = fw.Write(data)
	_ = mw.Close()
	req := httptest.NewRequest("POST", "/api/admin/files", &body)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Authorization", "Bearer "+tok)
	rec := httptest.NewRecorder()
	a.Router.ServeHTTP(rec, req)
	res := response{Status: rec.Code, Raw: rec.Body.Bytes(), Header: rec.Header()}
	_ = jsonUnmarshal(res.Raw, &res.Body)
	return res
}

// waitForStatus polls GET path (an article, a mass send) until its status is
// want, or fails after a while.
func waitForStatus(t *testing.T, a *app.App, tok, path, want string) response {
	t.Helper()
	var r response
	eventually(t, 15*time.Second, path+" "+want, func() bool {
		r = call(t, a.Router, "GET", path, tok, nil)
		return r.Body["status"] == want
	})
	return r
}

func waitArticle(t *testing.T, a *app.App, tok string, id uint64, want string) response {
	t.Helper()
	return waitForStatus(t, a, tok, fmt.Sprintf("/api/admin/articles/%d", id), want)
}

// publishedArticle writes an article with a cover and publishes it through
// the sandbox, as a marketing user would.
func publishedArticle(t *testing.T, a *app.App, tok, title string) uint64 {
	t.Helper()
	cover := uploadMedia(t, a, tok, pngBytes(testPicture(300, 128, false)))
	if cover.Status != 201 {
		t.Fatalf("cover: %d %s", cover.Status, cover.Raw)
	}
	r := call(t, a.Router, "POST", "/api/admin/articles", tok, map[string]any{"title": title, "content": "<p>" + title + "</p>",
		"category": "guide", "cover_file_id": cover.Body["id"]})
	if r.Status != 201 {
		t.Fatalf("article: %d %s", r.Status, r.Raw)
	}
	id := uint64(r.Body["id"].(float64))
	if p := call(t, a.Router, "POST", fmt.Sprintf("/api/admin/articles/%d/publish", id), tok, nil); p.Status != 202 {
		t.Fatalf("publish: %d %s", p.Status, p.Raw)
	}
	waitArticle(t, a, tok, id, model.ArticlePublished)
	return id
}

// A marketing user writes an article with two images (one a GIF WeChat
// would refuse, one too large for it), the server sanitises it and checks
// WeChat's limits, publishing uploads the images and the cover the way
// WeChat takes them and ends with the PUBLISHJOBFINISH event; patients
// read and share it in the mini-program, and the console counts reads,
// readers, shares and the bookings that followed.
func TestArticleWriteAndPublish(t *testing.T) {
	forEachBackend(t, nil, func(t *testing.T, a *app.App) {
		h := a.Router
		admin := staffLogin(t, h, app.DemoAdminUser, app.DemoAdminPassword)
		mkt := newStaffOnce(t, a, admin, "mkt", "marketing")
		desk := newStaffOnce(t, a, admin, "desk", "frontdesk")

		// Images: ours, served to anyone.
		small := pngBytes(testPicture(640, 360, false))
		up1 := uploadMedia(t, a, mkt, small)
		up2 := uploadMedia(t, a, mkt, gifBytes(testPicture(320, 200, false)))
		big := pngBytes(testPicture(760, 760, true))
		if len(big) < 1<<20 {
			t.Fatalf("the large picture is only %d bytes", len(big))
		}
		up3 := uploadMedia(t, a, mkt, big)
		for _, u := range []response{up1, up2, up3} {
			if u.Status != 201 || !strings.HasPrefix(u.Body["url"].(string), "/media/") {
				t.Fatalf("upload: %d %s", u.Status, u.Raw)
			}
		}
		if r := uploadMedia(t, a, mkt, []byte("%PDF-1.4 not an image")); r.Status != 400 || r.ErrCode() != "invalid_image" {
			t.Fatalf("a PDF as an image: %d %s", r.Status, r.Raw)
		}
		if r := uploadMedia(t, a, desk, small); r.Status != 403 {
			t.Fatalf("the front desk uploads article images: %d", r.Status)
		}
		got := httptest.NewRecorder()
		h.ServeHTTP(got, httptest.NewRequest("GET", up1.Body["url"].(string), nil))
		if got.Code != 200 || !bytes.Equal(got.Body.Bytes(), small) || got.Header().Get("Content-Type") != "image/png" {
			t.Fatalf("media: %d %s %d bytes", got.Code, got.Header().Get("Content-Type"), got.Body.Len())
		}
		if r := call(t, h, "GET", "/media/0123456789abcdef0123456789abcdef.png", "", nil); r.Status != 404 {
			t.Fatalf("unknown media: %d", r.Status)
		}

		url1, url2, url3 := up1.Body["url"].(string), up2.Body["url"].(string), up3.Body["url"].(string)
		content := `<p onclick="steal()" style="color: red">体检前一天晚上 8 点后禁食<script>alert(1)</script></p>` +
			`<img src="` + url1 + `" alt="流程"><p><a href="javascript:alert(1)">点我</a></p><img src="` + url2 + `">` +
			`<iframe src="https://evil.example/x"></iframe><p><img src="` + url3 + `"></p>`
		art := map[string]any{"title": "冬季体检须知", "author": "体检中心", "digest": "体检前的准备", "content": content, "category": "guide"}
		r := call(t, h, "POST", "/api/admin/articles", mkt, art)
		if r.Status != 201 || r.Body["status"] != "draft" {
			t.Fatalf("create: %d %s", r.Status, r.Raw)
		}
		id := uint64(r.Body["id"].(float64))
		saved := r.Body["content"].(string)
		for _, bad := range []string{"script", "onclick", "javascript:", "evil.example", "alert"} {
			if strings.Contains(saved, bad) {
				t.Errorf("the saved HTML keeps %q: %s", bad, saved)
			}
		}
		for _, keep := range []string{"禁食", url1, url2, url3, "color: red"} {
			if !strings.Contains(saved, keep) {
				t.Errorf("the saved HTML lost %q: %s", keep, saved)
			}
		}

		// WeChat's limits, with the field named.
		with := func(k string, v any) map[string]any {
			m := map[string]any{}
			for kk, vv := range art {
				m[kk] = vv
			}
			m[k] = v
			return m
		}
		for _, c := range []struct {
			body  map[string]any
			code  string
			field string
		}{
			{with("title", strings.Repeat("字", 33)), "invalid_article", "title"},
			{with("author", strings.Repeat("字", 17)), "invalid_article", "author"},
			{with("digest", strings.Repeat("字", 129)), "invalid_article", "digest"},
			{with("content", "<p>"+strings.Repeat("字", 20000)+"</p>"), "invalid_article", "content"},
			{with("content", "<script>alert(1)</script>"), "invalid_article", "content"},
			{with("category", "gossip"), "invalid_article", "category"},
			{with("content", `<img src="https://example.org/x.png">`), "foreign_image", ""},
			{with("cover_file_id", 987654), "media_not_found", "cover_file_id"},
		} {
			r := call(t, h, "POST", "/api/admin/articles", mkt, c.body)
			d, _ := r.Body["error"].(map[string]any)
			det, _ := d["details"].(map[string]any)
			if r.Status != 400 || r.ErrCode() != c.code || (c.field != "" && det["field"] != c.field) {
				t.Errorf("%s/%s: %d %s", c.code, c.field, r.Status, r.Raw)
			}
			if msg, _ := d["message"].(string); msg == "" || !strings.ContainsAny(msg, "标题作者摘要正文分类图片") {
				t.Errorf("%s: no Chinese message: %s", c.code, r.Raw)
			}
		}
		if r := call(t, h, "POST", "/api/admin/articles", desk, art); r.Status != 403 {
			t.Fatalf("the front desk writes articles: %d", r.Status)
		}

		// Publishing needs a cover.
		if r := call(t, h, "POST", fmt.Sprintf("/api/admin/articles/%d/publish", id), mkt, nil); r.Status != 422 || r.ErrCode() != "cover_required" {
			t.Fatalf("publish without cover: %d %s", r.Status, r.Raw)
		}
		cover := uploadMedia(t, a, mkt, pngBytes(testPicture(900, 383, true))) // far over 64 KB
		art["cover_file_id"] = cover.Body["id"]
		if r := call(t, h, "PUT", fmt.Sprintf("/api/admin/articles/%d", id), mkt, art); r.Status != 200 || r.Body["cover_url"] != cover.Body["url"] {
			t.Fatalf("set cover: %d %s", r.Status, r.Raw)
		}
		p := call(t, h, "POST", fmt.Sprintf("/api/admin/articles/%d/publish", id), mkt, nil)
		if p.Status != 202 || p.Body["status"] != "submitted" {
			t.Fatalf("publish: %d %s", p.Status, p.Raw)
		}
		done := waitArticle(t, a, mkt, id, model.ArticlePublished)
		url, _ := done.Body["article_url"].(string)
		if !strings.HasPrefix(url, "https://mp.weixin.qq.com/s/") {
			t.Fatalf("published without a URL: %s", done.Raw)
		}
		// WeChat got its own copies: the images in the draft are WeChat's
		// (none filtered out), the cover a thumb.
		var pub model.ArticlePublication
		a.DB.Gorm().Where("article_id = ?", id).Take(&pub)
		draft := a.Sandbox.Draft(pub.MediaID)
		if len(draft) != 1 {
			t.Fatalf("draft %q: %+v", pub.MediaID, draft)
		}
		if n := strings.Count(draft[0].Content, "mmbiz.qpic.cn"); n != 3 || strings.Contains(draft[0].Content, "/media/") {
			t.Fatalf("the draft's images (%d of WeChat's): %s", n, draft[0].Content)
		}
		if draft[0].ThumbMediaID == "" || draft[0].Title != "冬季体检须知" {
			t.Fatalf("draft: %+v", draft[0])
		}
		uploads := a.Sandbox.Calls(wxsandbox.APIUploadImg)
		if uploads != 3 || a.Sandbox.Calls(wxsandbox.APIAddMaterial) != 1 {
			t.Fatalf("uploads: %d images, %d thumbs", uploads, a.Sandbox.Calls(wxsandbox.APIAddMaterial))
		}

		// In the mini-program.
		alice, _ := login(t, h, "dev:reader-alice")
		bob, _ := login(t, h, "dev:reader-bob")
		list := call(t, h, "GET", "/api/mp/articles?category=guide", alice, nil)
		items, _ := list.Body["items"].([]any)
		if list.Status != 200 || len(items) != 1 || items[0].(map[string]any)["category_name"] != "体检须知" {
			t.Fatalf("mp list: %d %s", list.Status, list.Raw)
		}
		if _, has := items[0].(map[string]any)["content"]; has {
			t.Errorf("the list carries whole articles: %s", list.Raw)
		}
		if r := call(t, h, "GET", "/api/mp/articles?category=science", alice, nil); len(r.Body["items"].([]any)) != 0 {
			t.Errorf("another category lists it: %s", r.Raw)
		}
		one := call(t, h, "GET", fmt.Sprintf("/api/mp/articles/%d", id), alice, nil)
		body, _ := one.Body["content"].(string)
		if one.Status != 200 || !strings.Contains(body, `src="http://example.com`+url1+`"`) || !strings.HasPrefix(one.Body["cover_url"].(string), "http://example.com/media/") {
			t.Fatalf("mp article: %d %s", one.Status, one.Raw)
		}
		call(t, h, "GET", fmt.Sprintf("/api/mp/articles/%d", id), alice, nil)
		call(t, h, "GET", fmt.Sprintf("/api/mp/articles/%d", id), bob, nil)
		if r := call(t, h, "POST", fmt.Sprintf("/api/mp/articles/%d/shares", id), bob, map[string]any{"scene": "chat"}); r.Status != 204 {
			t.Fatalf("share: %d %s", r.Status, r.Raw)
		}
		if r := call(t, h, "POST", fmt.Sprintf("/api/mp/articles/%d/shares", id), bob, map[string]any{}); r.Status != 400 {
			t.Fatalf("share without scene: %d %s", r.Status, r.Raw)
		}
		// Bob books after reading: the article led to a booking.
		sl := testSlot(t, a, "07:00", 5)
		if r := bookCall(t, h, bob, "after-read", map[string]any{"package_id": anyPackage(t, a).ID, "slot_id": sl.ID}); r.Status != 201 {
			t.Fatalf("book: %d %s", r.Status, r.Raw)
		}
		st := call(t, h, "GET", fmt.Sprintf("/api/admin/articles/%d", id), mkt, nil)
		if st.Body["reads"] != 3.0 || st.Body["readers"] != 2.0 || st.Body["shares"] != 1.0 || st.Body["bookings_after_read"] != 1.0 {
			t.Fatalf("figures: reads %v readers %v shares %v bookings %v", st.Body["reads"], st.Body["readers"], st.Body["shares"], st.Body["bookings_after_read"])
		}

		// An edit of the published article waits to be published again;
		// publishing it makes a new version with a new URL, the old kept.
		art["title"] = "冬季体检须知（更新）"
		ed := call(t, h, "PUT", fmt.Sprintf("/api/admin/articles/%d", id), mkt, art)
		if ed.Status != 200 || ed.Body["status"] != "published" || ed.Body["has_changes"] != true {
			t.Fatalf("edit: %d %s", ed.Status, ed.Raw)
		}
		call(t, h, "POST", fmt.Sprintf("/api/admin/articles/%d/publish", id), mkt, nil)
		again := waitArticle(t, a, mkt, id, model.ArticlePublished)
		pubs := again.Body["publications"].([]any)
		if len(pubs) != 2 || again.Body["article_url"] == url || again.Body["has_changes"] != false ||
			pubs[1].(map[string]any)["article_url"] != url || pubs[0].(map[string]any)["article_url"] != again.Body["article_url"] {
			t.Fatalf("republished: %s", again.Raw)
		}
		// Images WeChat has are not sent again.
		if a.Sandbox.Calls(wxsandbox.APIUploadImg) != uploads {
			t.Errorf("images uploaded again: %d", a.Sandbox.Calls(wxsandbox.APIUploadImg))
		}

		// WeChat refuses it in audit: failed, with the reason in Chinese.
		a.Sandbox.NextPublishStatus(4, 1)
		call(t, h, "POST", fmt.Sprintf("/api/admin/articles/%d/publish", id), mkt, nil)
		failed := waitArticle(t, a, mkt, id, model.ArticleFailed)
		if reason, _ := failed.Body["fail_reason"].(string); !strings.Contains(reason, "审核不通过") || !strings.Contains(reason, "第 1 篇") {
			t.Fatalf("failure: %s", failed.Raw)
		}
		// The article published before stays readable.
		if r := call(t, h, "GET", fmt.Sprintf("/api/mp/articles/%d", id), alice, nil); r.Status != 200 {
			t.Fatalf("a failed republish hid the article: %d", r.Status)
		}
	})
}

// When WeChat's PUBLISHJOBFINISH never comes, careloop asks
// freepublish/get; meanwhile the article cannot be edited.
func TestArticlePublishPolledWhenTheEventNeverComes(t *testing.T) {
	forEachBackend(t, func(c *app.Config) { c.PublishPoll = 300 * time.Millisecond }, func(t *testing.T, a *app.App) {
		h := a.Router
		admin := staffLogin(t, h, app.DemoAdminUser, app.DemoAdminPassword)
		cover := uploadMedia(t, a, admin, pngBytes(testPicture(300, 128, false)))
		art := map[string]any{"title": "医院动态", "content": "<p>新院区开业</p>", "category": "news", "cover_file_id": cover.Body["id"]}
		r := call(t, h, "POST", "/api/admin/articles", admin, art)
		id := uint64(r.Body["id"].(float64))
		if w := call(t, h, "POST", "/sandbox/wechat/events/withhold", "", map[string]any{"event": "PUBLISHJOBFINISH", "count": 1}); w.Status != 204 {
			t.Fatalf("withhold: %d %s", w.Status, w.Raw)
		}
		call(t, h, "POST", fmt.Sprintf("/api/admin/articles/%d/publish", id), admin, nil)
		waitArticle(t, a, admin, id, model.ArticlePublishing)
		if e := call(t, h, "PUT", fmt.Sprintf("/api/admin/articles/%d", id), admin, art); e.Status != 409 || e.ErrCode() != "article_publishing" {
			t.Fatalf("edit while publishing: %d %s", e.Status, e.Raw)
		}
		if e := call(t, h, "POST", fmt.Sprintf("/api/admin/articles/%d/publish", id), admin, nil); e.Status != 409 {
			t.Fatalf("publish twice: %d %s", e.Status, e.Raw)
		}
		done := waitArticle(t, a, admin, id, model.ArticlePublished)
		if a.Sandbox.Calls(wxsandbox.APIFreePublishGet) == 0 || done.Body["article_url"] == "" {
			t.Fatalf("published without asking WeChat: %s", done.Raw)
		}
	})
}

// A patient's reading counts once as a reader however many times they open
// the article at once; every opening counts as a read.
func TestArticleReadersCountedOnceUnderRace(t *testing.T) {
	forEachBackend(t, nil, func(t *testing.T, a *app.App) {
		h := a.Router
		admin := staffLogin(t, h, app.DemoAdminUser, app.DemoAdminPassword)
		id := publishedArticle(t, a, admin, "高血压的日常管理")
		toks := make([]string, 4)
		for i := range toks {
			toks[i], _ = login(t, h, fmt.Sprintf("dev:racer-%d", i))
		}
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := 0; i < 24; i++ {
			wg.Add(1)
			go func(tok string) {
				defer wg.Done()
				<-start
				if r := call(t, h, "GET", fmt.Sprintf("/api/mp/articles/%d", id), tok, nil); r.Status != 200 {
					t.Errorf("read: %d %s", r.Status, r.Raw)
				}
			}(toks[i%len(toks)])
		}
		close(start)
		wg.Wait()
		st := call(t, h, "GET", fmt.Sprintf("/api/admin/articles/%d", id), admin, nil)
		if st.Body["reads"] != 24.0 || st.Body["readers"] != 4.0 {
			t.Fatalf("reads %v, readers %v", st.Body["reads"], st.Body["readers"])
		}
		var rows int64
		a.DB.Gorm().Model(&model.ArticleRead{}).Where("article_id = ?", id).Count(&rows)
		if rows != 4 {
			t.Fatalf("%d reading rows for 4 readers", rows)
		}
	})
}
