package wxconfig

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// The official account's publishing and mass-send endpoints go through
// careloop's own small client rather than the SDK's: the SDK's draft lacks
// fields, its freepublish drops msg_data_id, and its broadcast keeps one
// cached instance that a single preview flips to preview mode for good
// (WECHAT.md). Calls still share the token source and its
// evict-and-retry-once on a refused token (DoOA).

// oaPost posts body as JSON to path (under the API host) with the
// official account's token and decodes the answer into out, failing with
// *Error when WeChat answers an errcode.
func (c *Clients) oaPost(ctx context.Context, op, path string, body, out any) error {
	raw, err := json.Marshal(body)
	if err != nil {
		return &Error{Op: op, Msg: "encode request: " + err.Error()}
	}
	return c.DoOA(ctx, op, func(ctx context.Context) error {
		return c.oaDo(ctx, op, path, "application/json", raw, out)
	})
}

// oaUpload posts data as the multipart field "media" (WeChat's name for it)
// with filename.
func (c *Clients) oaUpload(ctx context.Context, op, path, filename string, data []byte, out any) error {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	fw, err := mw.CreateFormFile("media", filename)
	if err == nil {
		_, err = fw.Write(data)
	}
	if err == nil {
		err = mw.Close()
	}
	if err != nil {
		return &Error{Op: op, Msg: "encode upload: " + err.Error()}
	}
	body := buf.Bytes()
	return c.DoOA(ctx, op, func(ctx context.Context) error {
		return c.oaDo(ctx, op, path, mw.FormDataContentType(), body, out)
	})
}

// oaGet is oaPost for WeChat's few GET endpoints.
func (c *Clients) oaGet(ctx context.Context, op, path string, out any) error {
	return c.DoOA(ctx, op, func(ctx context.Context) error {
		return c.oaDo(ctx, op, path, "", nil, out)
	})
}

func (c *Clients) oaDo(ctx context.Context, op, path, contentType string, body []byte, out any) error {
	tok, err := c.OAToken.GetAccessTokenContext(ctx)
	if err != nil {
		return Classify(op, err)
	}
	u := "https://" + APIHost + path
	if strings.Contains(path, "?") {
		u += "&access_token=" + url.QueryEscape(tok)
	} else {
		u += "?access_token=" + url.QueryEscape(tok)
	}
	method := http.MethodPost
	if body == nil {
		method = http.MethodGet
	}
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		return Classify(op, err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	res, err := c.http.Do(req)
	if err != nil {
		return Classify(op, err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return &Error{Op: op, HTTPStatus: res.StatusCode, Msg: fmt.Sprintf("http status %d", res.StatusCode)}
	}
	raw, err := io.ReadAll(io.LimitReader(res.Body, 4<<20))
	if err != nil {
		return Classify(op, err)
	}
	var e struct {
		ErrCode int    `json:"errcode"`
		ErrMsg  string `json:"errmsg"`
	}
	if err := json.Unmarshal(raw, &e); err != nil {
		return &Error{Op: op, Transport: true, Msg: "answer is not JSON"}
	}
	if e.ErrCode != 0 {
		werr := &Error{Op: op, Code: e.ErrCode, Msg: scrub(e.ErrMsg)}
		if out != nil {
			_ = json.Unmarshal(raw, out) // some errors carry data (45065 carries the msg_id)
		}
		return werr
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return &Error{Op: op, Transport: true, Msg: "answer does not decode: " + scrub(err.Error())}
	}
	return nil
}

// flexID reads an id WeChat sends as a number or as a string
// (freepublish's publish_id is documented as a string and comes as a
// number).
type flexID string

func (f *flexID) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	if s == "null" {
		s = ""
	}
	*f = flexID(s)
	return nil
}

// UploadArticleImage uploads an in-article image (jpg/png under 1 MB) and
// returns the URL to use in the article's HTML.
func (c *Clients) UploadArticleImage(ctx context.Context, filename string, data []byte) (string, error) {
	var out struct {
		URL string `json:"url"`
	}
	if err := c.oaUpload(ctx, "media uploadimg", "/cgi-bin/media/uploadimg", filename, data, &out); err != nil {
		return "", err
	}
	return out.URL, nil
}

// AddThumb adds a cover as permanent thumb material (JPG, at most 64 KB)
// and returns its media_id.
func (c *Clients) AddThumb(ctx context.Context, filename string, data []byte) (string, error) {
	var out struct {
		MediaID string `json:"media_id"`
	}
	if err := c.oaUpload(ctx, "material add thumb", "/cgi-bin/material/add_material?type=thumb", filename, data, &out); err != nil {
		return "", err
	}
	return out.MediaID, nil
}

// DraftArticle is one article of a draft (draft/add), with the fields the
// SDK's draft.Article lacks.
type DraftArticle struct {
	ArticleType        string `json:"article_type,omitempty"`
	Title              string `json:"title"`
	Author             string `json:"author,omitempty"`
	Digest             string `json:"digest,omitempty"`
	Content            string `json:"content"`
	ContentSourceURL   string `json:"content_source_url,omitempty"`
	ThumbMediaID       string `json:"thumb_media_id"`
	NeedOpenComment    int    `json:"need_open_comment"`
	OnlyFansCanComment int    `json:"only_fans_can_comment"`
}

// AddDraft adds a draft of articles and returns its media_id.
func (c *Clients) AddDraft(ctx context.Context, articles []DraftArticle) (string, error) {
	var out struct {
		MediaID string `json:"media_id"`
	}
	if err := c.oaPost(ctx, "draft add", "/cgi-bin/draft/add", map[string]any{"articles": articles}, &out); err != nil {
		return "", err
	}
	return out.MediaID, nil
}

// SubmitPublish asks WeChat to publish the draft mediaID. An answer without
// an error only means the task was accepted: the result comes with the
// PUBLISHJOBFINISH event or from PublishStatus.
func (c *Clients) SubmitPublish(ctx context.Context, mediaID string) (publishID, msgDataID string, err error) {
	var out struct {
		PublishID flexID `json:"publish_id"`
		MsgDataID flexID `json:"msg_data_id"`
	}
	if err := c.oaPost(ctx, "freepublish submit", "/cgi-bin/freepublish/submit", map[string]string{"media_id": mediaID}, &out); err != nil {
		return "", "", err
	}
	return string(out.PublishID), string(out.MsgDataID), nil
}

// Publish statuses (freepublish/get and PUBLISHJOBFINISH).
const (
	PublishOK            = 0
	PublishRunning       = 1
	PublishOriginalCheck = 2
	PublishFailed        = 3
	PublishAuditRefused  = 4
	PublishDeleted       = 5
	PublishBanned        = 6
)

// PublishMeaning says in Chinese what a publish status means, for staff.
func PublishMeaning(status int) string {
	switch status {
	case PublishOK:
		return "发布成功"
	case PublishRunning:
		return "发布中"
	case PublishOriginalCheck:
		return "原创声明检查未通过"
	case PublishFailed:
		return "发布失败"
	case PublishAuditRefused:
		return "平台审核不通过"
	case PublishDeleted:
		return "发布后已被删除"
	case PublishBanned:
		return "发布后被封禁"
	}
	return "未知状态 " + strconv.Itoa(status)
}

// PublishResult is where a publish task is: Status (see the constants),
// the published article's id and URLs (by idx, from 1), and the articles
// that failed (fail_idx).
type PublishResult struct {
	PublishID string
	Status    int
	ArticleID string
	URLs      []string
	FailIdx   []int
}

// PublishStatus asks WeChat where a publish task is (freepublish/get).
func (c *Clients) PublishStatus(ctx context.Context, publishID string) (PublishResult, error) {
	var out struct {
		PublishID     flexID `json:"publish_id"`
		PublishStatus int    `json:"publish_status"`
		ArticleID     string `json:"article_id"`
		ArticleDetail struct {
			Item []struct {
				Idx        int    `json:"idx"`
				ArticleURL string `json:"article_url"`
			} `json:"item"`
		} `json:"article_detail"`
		FailIdx []int `json:"fail_idx"`
	}
	if err := c.oaPost(ctx, "freepublish get", "/cgi-bin/freepublish/get", map[string]string{"publish_id": publishID}, &out); err != nil {
		return PublishResult{}, err
	}
	r := PublishResult{PublishID: string(out.PublishID), Status: out.PublishStatus, ArticleID: out.ArticleID, FailIdx: out.FailIdx}
	for _, it := range out.ArticleDetail.Item {
		r.URLs = append(r.URLs, it.ArticleURL)
	}
	return r, nil
}

// Mass-send error codes careloop acts on.
const (
	CodeMassSentAlready  = 45065 // this clientmsgid was sent within 24 h: the answer carries its msg_id
	CodeMassRetryTooFast = 45066
	CodeMassNoQuota      = 45028
	CodeTooFewUsers      = 40130
)

func init() {
	codeOutcomes[CodeMassRetryTooFast] = OutcomeMinuteLimit
	codeOutcomes[CodeMassNoQuota] = OutcomeQuotaHeld
	codeMeanings[CodeMassSentAlready] = "该批次已群发过"
	codeMeanings[CodeMassRetryTooFast] = "重试过快"
	codeMeanings[CodeMassNoQuota] = "群发额度已用完"
	codeMeanings[CodeTooFewUsers] = "群发对象至少需要 2 人"
}

// MassMessage is what a mass send carries: an article's draft (MediaID) or
// a text.
type MassMessage struct {
	MediaID string
	Text    string
}

func (m MassMessage) fields(body map[string]any) {
	if m.MediaID != "" {
		body["msgtype"] = "mpnews"
		body["mpnews"] = map[string]string{"media_id": m.MediaID}
		body["send_ignore_reprint"] = 0
		return
	}
	body["msgtype"] = "text"
	body["text"] = map[string]string{"content": m.Text}
}

type massAnswer struct {
	MsgID     flexID `json:"msg_id"`
	MsgDataID flexID `json:"msg_data_id"`
}

// MassSend sends m to openIDs (2 to 10,000) under clientMsgID, which
// WeChat de-duplicates for 24 hours: a batch sent again answers the first
// send's msg_id (45065), which MassSend returns as a success.
func (c *Clients) MassSend(ctx context.Context, openIDs []string, m MassMessage, clientMsgID string) (string, error) {
	body := map[string]any{"touser": openIDs, "clientmsgid": clientMsgID}
	m.fields(body)
	return c.mass(ctx, "mass send", "/cgi-bin/message/mass/send", body)
}

// MassSendAll sends m to every follower (tagID 0) or to a WeChat tag's.
func (c *Clients) MassSendAll(ctx context.Context, tagID int, m MassMessage, clientMsgID string) (string, error) {
	filter := map[string]any{"is_to_all": tagID == 0}
	if tagID != 0 {
		filter["tag_id"] = tagID
	}
	body := map[string]any{"filter": filter, "clientmsgid": clientMsgID}
	m.fields(body)
	return c.mass(ctx, "mass sendall", "/cgi-bin/message/mass/sendall", body)
}

func (c *Clients) mass(ctx context.Context, op, path string, body map[string]any) (string, error) {
	var out massAnswer
	err := c.oaPost(ctx, op, path, body, &out)
	if CodeOf(err) == CodeMassSentAlready && out.MsgID != "" {
		return string(out.MsgID), nil
	}
	if err != nil {
		return "", err
	}
	return string(out.MsgID), nil
}

// MassPreview sends m to one person's WeChat (an openid, or a WeChat
// account name), as the mass send would show it.
func (c *Clients) MassPreview(ctx context.Context, openID, wxName string, m MassMessage) error {
	body := map[string]any{}
	if openID != "" {
		body["touser"] = openID
	} else {
		body["towxname"] = wxName
	}
	m.fields(body)
	return c.oaPost(ctx, "mass preview", "/cgi-bin/message/mass/preview", body, nil)
}

// MassStatus asks where a mass send is: SEND_SUCCESS, SENDING, SEND_FAIL
// or DELETE.
func (c *Clients) MassStatus(ctx context.Context, msgID string) (string, error) {
	var out struct {
		MsgStatus string `json:"msg_status"`
	}
	id, _ := strconv.ParseInt(msgID, 10, 64)
	if err := c.oaPost(ctx, "mass get", "/cgi-bin/message/mass/get", map[string]any{"msg_id": id}, &out); err != nil {
		return "", err
	}
	return out.MsgStatus, nil
}

// MassResult is WeChat's result of one mass send (MASSSENDJOBFINISH):
// its status ("send success", "send fail", "err(num)") and counts.
type MassResult struct {
	MsgID                         string
	Status                        string
	Total, Filtered, Sent, Errors int
}

// QRCode is a parametric QR code of the official account: Content is what
// it encodes (draw it), Ticket names it at WeChat.
type QRCode struct {
	Ticket        string
	Content       string
	ExpireSeconds int
}

// CreateQRCode makes a QR code carrying scene (at most 64 characters):
// permanent (QR_LIMIT_STR_SCENE) when expireSeconds is 0, else temporary
// (QR_STR_SCENE, at most 30 days).
func (c *Clients) CreateQRCode(ctx context.Context, scene string, expireSeconds int) (QRCode, error) {
	body := map[string]any{"action_info": map[string]any{"scene": map[string]string{"scene_str": scene}}}
	if expireSeconds > 0 {
		body["action_name"], body["expire_seconds"] = "QR_STR_SCENE", expireSeconds
	} else {
		body["action_name"] = "QR_LIMIT_STR_SCENE"
	}
	var out struct {
		Ticket        string `json:"ticket"`
		ExpireSeconds int    `json:"expire_seconds"`
		URL           string `json:"url"`
	}
	if err := c.oaPost(ctx, "qrcode create", "/cgi-bin/qrcode/create", body, &out); err != nil {
		return QRCode{}, err
	}
	return QRCode{Ticket: out.Ticket, Content: out.URL, ExpireSeconds: out.ExpireSeconds}, nil
}

// User-tag error codes careloop acts on.
const (
	CodeTagNameExists = 45157
	CodeTooManyTags   = 45059 // a follower in the call holds 20 tags already
)

// UserTag is one of the official account's user tags.
type UserTag struct {
	ID   int    `json:"id"`
	Name string `json:"name"`
}

// CreateUserTag makes a user tag (name at most 30 characters) and returns
// its id; a tag of that name already there is found and returned.
func (c *Clients) CreateUserTag(ctx context.Context, name string) (int, error) {
	var out struct {
		Tag UserTag `json:"tag"`
	}
	err := c.oaPost(ctx, "tags create", "/cgi-bin/tags/create", map[string]any{"tag": map[string]string{"name": name}}, &out)
	if CodeOf(err) == CodeTagNameExists {
		var list struct {
			Tags []UserTag `json:"tags"`
		}
		if err := c.oaGet(ctx, "tags get", "/cgi-bin/tags/get", &list); err != nil {
			return 0, err
		}
		for _, t := range list.Tags {
			if t.Name == name {
				return t.ID, nil
			}
		}
	}
	if err != nil {
		return 0, err
	}
	return out.Tag.ID, nil
}

// DeleteUserTag removes a user tag (from every follower too).
func (c *Clients) DeleteUserTag(ctx context.Context, id int) error {
	return c.oaPost(ctx, "tags delete", "/cgi-bin/tags/delete", map[string]any{"tag": map[string]int{"id": id}}, nil)
}

// TagUsers puts tag id on up to 50 openids (untag: takes it off).
func (c *Clients) TagUsers(ctx context.Context, id int, openIDs []string, untag bool) error {
	path, op := "/cgi-bin/tags/members/batchtagging", "tags batchtagging"
	if untag {
		path, op = "/cgi-bin/tags/members/batchuntagging", "tags batchuntagging"
	}
	return c.oaPost(ctx, op, path, map[string]any{"openid_list": openIDs, "tagid": id}, nil)
}
