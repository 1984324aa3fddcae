package wxsandbox

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Publishing on the official account as WeChat does it: images uploaded
// for articles (media/uploadimg) and as thumb material, drafts checked
// against WeChat's limits, and publish tasks that end asynchronously with
// the PUBLISHJOBFINISH event posted to the server's callback (unless the
// event is withheld, as WeChat sometimes fails to send it), their state
// readable with freepublish/get.

// More WeChat error codes of publishing.
const (
	CodeInvalidFileType = 40005
	CodeInvalidFileSize = 40009
	CodeInvalidMediaID  = 40007
	CodeEmptyNews       = 44003
	CodeContentSize     = 45002
	CodeTitleSize       = 45003
	CodeDigestSize      = 45004
	CodeAuthorSize      = 45110
	CodePublishNotExist = 48006
)

func init() {
	for code, msg := range map[int]string{
		CodeInvalidFileType: "invalid file type",
		CodeInvalidFileSize: "invalid file size",
		CodeInvalidMediaID:  "invalid media_id",
		CodeEmptyNews:       "empty news data",
		CodeContentSize:     "content size out of limit",
		CodeTitleSize:       "title size out of limit",
		CodeDigestSize:      "description size out of limit",
		CodeAuthorSize:      "author size out of limit",
		CodePublishNotExist: "publish_id not exist",
	} {
		codeMessages[code] = msg
	}
}

// Publishing endpoint names.
const (
	APIUploadImg   = "media_uploadimg"
	APIAddMaterial = "material_add"
)

// publishTask is a freepublish task.
type publishTask struct {
	mediaID string
	status  int // 1 publishing until it ends
	url     string
	failIdx []int
}

// An image WeChat keeps: its bytes' size and type.
type storedImage struct {
	size int
	kind string
}

// SetEventSink sets where the sandbox posts the events it sends on its own
// (PUBLISHJOBFINISH, MASSSENDJOBFINISH): sink gets the plain XML and posts
// it to the server's callback as WeChat would. delay is how long a job
// takes.
func (s *Sandbox) SetEventSink(sink func(msg []byte), delay time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sink, s.eventDelay = sink, delay
}

// WithholdEvents makes the next n events of kind (PUBLISHJOBFINISH,
// MASSSENDJOBFINISH) never be sent: the job still ends, and only asking
// for it tells so.
func (s *Sandbox) WithholdEvents(kind string, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.withhold[kind] += n
}

// NextPublishStatus makes the next publish task end with status (2 to 6:
// a failure), failing the articles at failIdx.
func (s *Sandbox) NextPublishStatus(status int, failIdx ...int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.publishPlan = append(s.publishPlan, publishTask{status: status, failIdx: failIdx})
}

// Draft returns the articles of a draft as WeChat keeps them (content
// filtered), or nil.
func (s *Sandbox) Draft(mediaID string) []DraftArticle {
	s.mu.Lock()
	defer s.mu.Unlock()
	var d struct {
		Articles []DraftArticle `json:"articles"`
	}
	if raw, ok := s.drafts[mediaID]; ok {
		_ = json.Unmarshal(raw, &d)
	}
	return d.Articles
}

// DraftArticle is an article of a draft.
type DraftArticle struct {
	Title        string `json:"title"`
	Author       string `json:"author"`
	Digest       string `json:"digest"`
	Content      string `json:"content"`
	ThumbMediaID string `json:"thumb_media_id"`
}

// emit sends an event after the sandbox's job delay, unless withheld.
func (s *Sandbox) emitLocked(kind string, msg []byte) {
	if s.withhold[kind] > 0 {
		s.withhold[kind]--
		return
	}
	sink, delay := s.sink, s.eventDelay
	if sink == nil {
		return
	}
	s.jobs.Add(1)
	time.AfterFunc(delay, func() {
		defer s.jobs.Done()
		sink(msg)
	})
}

// WaitJobs waits for the events the sandbox has scheduled to be posted.
func (s *Sandbox) WaitJobs() { s.jobs.Wait() }

// readUpload reads the multipart field "media" of an upload.
func readUpload(w http.ResponseWriter, r *http.Request) ([]byte, string, bool) {
	f, hdr, err := r.FormFile("media")
	if err != nil {
		writeJSON(w, http.StatusOK, errBody(41005, "media data missing"))
		return nil, "", false
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, 20<<20))
	if err != nil {
		writeJSON(w, http.StatusOK, errBody(CodeInvalidFileSize, ""))
		return nil, "", false
	}
	return data, hdr.Filename, true
}

func imageKind(data []byte) string {
	switch http.DetectContentType(data) {
	case "image/jpeg":
		return "jpg"
	case "image/png":
		return "png"
	case "image/gif":
		return "gif"
	case "image/webp":
		return "webp"
	}
	return ""
}

func (s *Sandbox) handleUploadImg(w http.ResponseWriter, r *http.Request, _ string) {
	data, _, ok := readUpload(w, r)
	if !ok {
		return
	}
	kind := imageKind(data)
	switch {
	case kind != "jpg" && kind != "png":
		writeJSON(w, http.StatusOK, errBody(CodeInvalidFileType, ""))
		return
	case len(data) >= 1<<20:
		writeJSON(w, http.StatusOK, errBody(CodeInvalidFileSize, ""))
		return
	}
	url := fmt.Sprintf("http://mmbiz.qpic.cn/sz_mmbiz_%s/sandbox%s/0", kind, randHex(12))
	s.mu.Lock()
	s.images[url] = storedImage{size: len(data), kind: kind}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"url": url})
}

func (s *Sandbox) handleAddMaterial(w http.ResponseWriter, r *http.Request, _ string) {
	typ := r.URL.Query().Get("type")
	data, _, ok := readUpload(w, r)
	if !ok {
		return
	}
	kind := imageKind(data)
	switch typ {
	case "thumb":
		if kind != "jpg" {
			writeJSON(w, http.StatusOK, errBody(CodeInvalidFileType, ""))
			return
		}
		if len(data) > 64<<10 {
			writeJSON(w, http.StatusOK, errBody(CodeInvalidFileSize, ""))
			return
		}
	case "image":
		if kind == "" || kind == "webp" {
			writeJSON(w, http.StatusOK, errBody(CodeInvalidFileType, ""))
			return
		}
		if len(data) > 10<<20 {
			writeJSON(w, http.StatusOK, errBody(CodeInvalidFileSize, ""))
			return
		}
	default:
		writeJSON(w, http.StatusOK, errBody(40004, "invalid media type"))
		return
	}
	id := "sandbox_" + typ + "_" + randHex(10)
	url := "http://mmbiz.qpic.cn/sz_mmbiz_jpg/sandbox" + randHex(12) + "/0"
	s.mu.Lock()
	s.materials[id] = typ
	s.images[url] = storedImage{size: len(data), kind: kind}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"media_id": id, "url": url})
}

var (
	scriptRe = regexp.MustCompile(`(?is)<script.*?</script>`)
	imgTagRe = regexp.MustCompile(`(?i)<img[^>]*>`)
	imgSrcRe = regexp.MustCompile(`(?i)\ssrc="([^"]*)"`)
)

func (s *Sandbox) handleDraftAdd(w http.ResponseWriter, r *http.Request, _ string) {
	var req struct {
		Articles []DraftArticle `json:"articles"`
	}
	if !decode(w, r, &req) {
		return
	}
	if len(req.Articles) == 0 || len(req.Articles) > 8 {
		writeJSON(w, http.StatusOK, errBody(CodeEmptyNews, ""))
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, a := range req.Articles {
		code := 0
		switch {
		case a.Title == "" || a.Content == "":
			code = 53404
		case utf8.RuneCountInString(a.Title) > 32:
			code = CodeTitleSize
		case utf8.RuneCountInString(a.Author) > 16:
			code = CodeAuthorSize
		case utf8.RuneCountInString(a.Digest) > 128:
			code = CodeDigestSize
		case utf8.RuneCountInString(a.Content) >= 20000 || len(a.Content) >= 1<<20:
			code = CodeContentSize
		case a.ThumbMediaID == "":
			code = CodeEmptyNews
		case s.materials[a.ThumbMediaID] != "thumb" && s.materials[a.ThumbMediaID] != "image":
			code = CodeInvalidMediaID
		}
		if code != 0 {
			if code == 53404 {
				writeJSON(w, http.StatusOK, map[string]any{"errcode": code, "errmsg": "article title or content is empty"})
				return
			}
			writeJSON(w, http.StatusOK, errBody(code, ""))
			return
		}
		// WeChat strips scripts and drops images that are not its own.
		content := scriptRe.ReplaceAllString(a.Content, "")
		content = imgTagRe.ReplaceAllStringFunc(content, func(tag string) string {
			m := imgSrcRe.FindStringSubmatch(tag)
			if m == nil {
				return ""
			}
			if _, ok := s.images[m[1]]; !ok {
				return ""
			}
			return tag
		})
		req.Articles[i].Content = content
	}
	raw, _ := json.Marshal(req)
	id := "draft_" + randHex(10)
	s.drafts[id] = raw
	writeJSON(w, http.StatusOK, map[string]any{"media_id": id})
}

func (s *Sandbox) handleFreePublish(w http.ResponseWriter, r *http.Request, _ string) {
	var req struct {
		MediaID string `json:"media_id"`
	}
	if !decode(w, r, &req) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.drafts[req.MediaID]; !ok {
		writeJSON(w, http.StatusOK, errBody(CodeInvalidMediaID, ""))
		return
	}
	n := 2247500000 + len(s.publish) + 1
	id := strconv.Itoa(n)
	task := &publishTask{mediaID: req.MediaID, status: 1}
	s.publish[id] = task
	plan := publishTask{status: 0}
	if len(s.publishPlan) > 0 {
		plan, s.publishPlan = s.publishPlan[0], s.publishPlan[1:]
	}
	// The task ends after the job delay; the event follows (or not).
	end := func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		task.status, task.failIdx = plan.status, plan.failIdx
		if plan.status == 0 {
			task.url = "https://mp.weixin.qq.com/s/sandbox-" + id
		}
		s.emitLocked("PUBLISHJOBFINISH", publishEvent(id, task, s.now()))
	}
	s.jobs.Add(1)
	time.AfterFunc(s.eventDelay, func() { defer s.jobs.Done(); end() })
	// publish_id comes back as a number although documented as a string.
	writeJSON(w, http.StatusOK, map[string]any{"errcode": 0, "errmsg": "ok", "publish_id": n, "msg_data_id": n + 1})
}

func publishEvent(id string, t *publishTask, at time.Time) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "<xml><ToUserName><![CDATA[gh_sandbox]]></ToUserName><FromUserName><![CDATA[oSandboxAccount]]></FromUserName>"+
		"<CreateTime>%d</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[PUBLISHJOBFINISH]]></Event>"+
		"<PublishEventInfo><publish_id>%s</publish_id><publish_status>%d</publish_status>", at.Unix(), id, t.status)
	if t.status == 0 {
		fmt.Fprintf(&b, "<article_id><![CDATA[art_%s]]></article_id><article_detail><count>1</count><item><idx>1</idx><article_url><![CDATA[%s]]></article_url></item></article_detail>", id, t.url)
	}
	for _, i := range t.failIdx {
		fmt.Fprintf(&b, "<fail_idx>%d</fail_idx>", i)
	}
	b.WriteString("</PublishEventInfo></xml>")
	return b.Bytes()
}

func (s *Sandbox) handleFreePublishGet(w http.ResponseWriter, r *http.Request, _ string) {
	var req struct {
		PublishID json.RawMessage `json:"publish_id"`
	}
	if !decode(w, r, &req) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	id := strings.Trim(string(req.PublishID), `"`)
	t, ok := s.publish[id]
	if !ok {
		writeJSON(w, http.StatusOK, errBody(CodePublishNotExist, ""))
		return
	}
	out := map[string]any{"publish_id": id, "publish_status": t.status, "fail_idx": t.failIdx}
	if t.failIdx == nil {
		out["fail_idx"] = []int{}
	}
	if t.status == 0 {
		out["article_id"] = "art_" + id
		out["article_detail"] = map[string]any{"count": 1, "item": []map[string]any{{"idx": 1, "article_url": t.url}}}
	}
	writeJSON(w, http.StatusOK, out)
}
