// Package wxsandbox is a faithful fake of the WeChat HTTP API, for the
// endpoints careloop calls: their paths, JSON shapes, error codes and the
// rules that matter (subscribe credits, the 48-hour customer-service window,
// followers, token expiry, daily quotas). It records every send attempt and
// can be told to fail the next calls of an endpoint.
//
// Tests mount it with httptest; sandbox mode mounts it in-process so that the
// service runs with nothing else.
package wxsandbox

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"
)

// WeChat error codes the sandbox answers with.
const (
	CodeOK                = 0
	CodeBusy              = -1
	CodeInvalidCredential = 40001 // bad token, or on a token fetch a bad secret
	CodeInvalidOpenID     = 40003
	CodeInvalidAppID      = 40013
	CodeInvalidCode       = 40029
	CodeInvalidTemplate   = 40037
	CodeCodeUsed          = 40163
	CodeMissingToken      = 41001
	CodeTokenExpired      = 42001
	CodeRequireSubscribe  = 43004
	CodeSubscribeRefused  = 43101
	CodeDailyQuota        = 45009
	CodeMinuteQuota       = 45011
	CodeWindowClosed      = 45015
	CodeWindowCountUsed   = 45047
	CodeArgumentInvalid   = 47003
	CodeAPIUnauthorized   = 48001
	CodeInvalidMenu       = 40016
)

var codeMessages = map[int]string{
	CodeOK:                "ok",
	CodeBusy:              "system error",
	CodeInvalidCredential: "invalid credential, access_token is invalid or not latest",
	CodeInvalidOpenID:     "invalid openid",
	CodeInvalidAppID:      "invalid appid",
	CodeInvalidCode:       "invalid code",
	CodeInvalidTemplate:   "invalid template_id",
	CodeCodeUsed:          "code been used",
	CodeMissingToken:      "access_token missing",
	CodeTokenExpired:      "access_token expired",
	CodeRequireSubscribe:  "require subscribe",
	CodeSubscribeRefused:  "user refuse to accept the msg",
	CodeDailyQuota:        "reach max api daily quota limit",
	CodeMinuteQuota:       "reach max api minute quota limit",
	CodeWindowClosed:      "response out of time limit or subscription is canceled",
	CodeWindowCountUsed:   "out of response count limit",
	CodeArgumentInvalid:   "argument invalid!",
	CodeAPIUnauthorized:   "api unauthorized",
	CodeInvalidMenu:       "invalid button size",
}

// Endpoint names, used for faults, quotas and counts.
const (
	APIToken              = "token"
	APIStableToken        = "stable_token"
	APICode2Session       = "jscode2session"
	APIPhoneNumber        = "getuserphonenumber"
	APISubscribeSend      = "subscribe_send"
	APITemplateSend       = "template_send"
	APICustomSend         = "custom_send"
	APIMassSendAll        = "mass_sendall"
	APIMenuCreate         = "menu_create"
	APIMenuGet            = "menu_get"
	APIMenuDelete         = "menu_delete"
	APIMenuAddCond        = "menu_addconditional"
	APIDraftAdd           = "draft_add"
	APIFreePublish        = "freepublish_submit"
	APIFreePublishGet     = "freepublish_get"
	APITagsCreate         = "tags_create"
	APITagsGet            = "tags_get"
	APITagsBatchTagging   = "tags_batchtagging"
	APITagsBatchUntagging = "tags_batchuntagging"
	APITagsDelete         = "tags_delete"
	APIUserTagGet         = "user_tag_get"
	APIUserInfo           = "user_info"
	SendKindSubscribe     = "subscribe"
	SendKindTemplate      = "template"
	SendKindCustom        = "custom"
	SendKindMass          = "mass"
	tokenTTL              = 7200 * time.Second
	tokenOverlap          = 5 * time.Minute
	windowTTL             = 48 * time.Hour
	windowMaxReplies      = 5
	loginCodeTTL          = 5 * time.Minute
	templateDedupeWindow  = 10 * time.Minute
)

// AppKind tells a mini-program from an official account.
type AppKind string

// The two kinds of WeChat app careloop talks to.
const (
	MiniProgram     AppKind = "miniprogram"
	OfficialAccount AppKind = "officialaccount"
)

// App is a WeChat app the sandbox knows.
type App struct {
	AppID  string
	Secret string
	Kind   AppKind
}

// Template is a message template the sandbox accepts. Field types come from
// the key names as on WeChat (thing1 is a "thing", time2 a "time", ...).
type Template struct {
	ID string
	// LongTerm templates need no per-send credit (healthcare may apply).
	LongTerm bool
}

// Fault makes the next calls of an endpoint fail.
type Fault struct {
	ErrCode    int           // answered errcode (0 with HTTPStatus or Delay only)
	HTTPStatus int           // answer this HTTP status instead of 200
	Delay      time.Duration // wait this long before answering
}

// Sent is one recorded send attempt.
type Sent struct {
	ID      int64           `json:"id"`
	API     string          `json:"api"`
	AppID   string          `json:"appid"`
	ToUser  string          `json:"touser"`
	Payload json.RawMessage `json:"payload"`
	ErrCode int             `json:"errcode"`
	ErrMsg  string          `json:"errmsg"`
	MsgID   int64           `json:"msgid,omitempty"`
	At      time.Time       `json:"at"`
}

type token struct {
	appID   string
	expires time.Time
	stable  bool
}

type loginCode struct {
	openID, unionID string
	expires         time.Time
	used            bool
}

type window struct {
	opened  time.Time
	replies int
}

// Sandbox is the fake. Its zero value is not usable; call New.
type Sandbox struct {
	mu       sync.Mutex
	now      func() time.Time
	msgSeq   int64
	apps     map[string]App
	tmpls    map[string]Template
	tokens   map[string]*token
	stable   map[string]string // appid -> current stable token
	codes    map[string]*loginCode
	credits  map[string]int  // appid|openid|template -> credits
	follows  map[string]bool // oa appid|openid
	windows  map[string]*window
	faults   map[string][]Fault
	quotas   map[string]int // per API per day; 0 = unlimited
	used     map[string]int // API|yyyy-mm-dd -> calls
	calls    map[string]int // API -> calls (all time)
	sent     []Sent
	okSends  int // how many of sent have errcode 0
	nextID   int64
	dedupe   map[string]sentRef // template client_msg_id
	menu     json.RawMessage
	condMenu map[string]json.RawMessage
	drafts   map[string]json.RawMessage
	publish  map[string]*publishTask
	// Publishing: WeChat's copies of images, materials (media_id -> type),
	// the planned ends of the next publish tasks.
	images      map[string]storedImage
	materials   map[string]string
	publishPlan []publishTask
	// Events the sandbox sends on its own (job results), and how long a
	// job takes; withhold counts events of a kind not to send.
	sink       func(msg []byte)
	eventDelay time.Duration
	withhold   map[string]int
	jobs       sync.WaitGroup
	// Mass sends: jobs by msg_id, requests per minute, and what each
	// follower received per month (openid|yyyy-mm).
	massSeq   int64
	massJobs  map[int64]*massJob
	massRate  map[string]int
	massMonth map[string]int
	// QR codes: ticket -> scene.
	qrScenes map[string]string
	tags     map[int]string
	tagged   map[int]map[string]bool
	scenes   map[string]string // oa openid -> qr scene of its subscription
	// DevLogins makes "dev:NAME" login and phone codes valid and reusable.
	devLogins bool
}

type sentRef struct {
	msgID int64
	at    time.Time
}

// Options configures a Sandbox.
type Options struct {
	Apps      []App
	Templates []Template
	// DevLogins accepts "dev:NAME" as a login code for openid NAME and
	// "dev:PHONE" as a phone code, reusable, as sandbox mode promises.
	DevLogins bool
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// New returns a sandbox knowing opts' apps and templates.
func New(opts Options) *Sandbox {
	s := &Sandbox{
		now:       opts.Now,
		apps:      map[string]App{},
		tmpls:     map[string]Template{},
		tokens:    map[string]*token{},
		stable:    map[string]string{},
		codes:     map[string]*loginCode{},
		credits:   map[string]int{},
		follows:   map[string]bool{},
		windows:   map[string]*window{},
		faults:    map[string][]Fault{},
		quotas:    map[string]int{},
		used:      map[string]int{},
		calls:     map[string]int{},
		dedupe:    map[string]sentRef{},
		condMenu:  map[string]json.RawMessage{},
		drafts:    map[string]json.RawMessage{},
		publish:   map[string]*publishTask{},
		images:    map[string]storedImage{},
		materials: map[string]string{},
		withhold:  map[string]int{},
		massJobs:  map[int64]*massJob{},
		massRate:  map[string]int{},
		massMonth: map[string]int{},
		qrScenes:  map[string]string{},
		tags:      map[int]string{},
		tagged:    map[int]map[string]bool{},
		scenes:    map[string]string{},
		devLogins: opts.DevLogins,
	}
	if s.now == nil {
		s.now = time.Now
	}
	for _, a := range opts.Apps {
		s.apps[a.AppID] = a
	}
	for _, t := range opts.Templates {
		s.tmpls[t.ID] = t
	}
	return s
}

// UnionID is the unionid the sandbox gives the person whose mini-program
// openid is openID; the same person's official-account openid shares it.
func UnionID(openID string) string { return "union-" + openID }

// OAOpenID is the official-account openid of the person whose mini-program
// openid is mpOpenID (openids differ per app, as on WeChat).
func OAOpenID(mpOpenID string) string { return "oa-" + mpOpenID }

// SetClock replaces the sandbox's clock (tests move time with it).
func (s *Sandbox) SetClock(now func() time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.now = now
}

// FailNext makes the next n calls of api answer f.
func (s *Sandbox) FailNext(api string, n int, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := 0; i < n; i++ {
		s.faults[api] = append(s.faults[api], f)
	}
}

// ClearFaults drops every pending fault.
func (s *Sandbox) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = map[string][]Fault{}
}

// SetQuota caps api at n calls a day (0: unlimited); calls past it get 45009.
func (s *Sandbox) SetQuota(api string, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.quotas[api] = n
}

// Calls counts the calls api has had, faults and errors included.
func (s *Sandbox) Calls(api string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[api]
}

// TokenFetches counts every access-token fetch (token and stable_token).
func (s *Sandbox) TokenFetches() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[APIToken] + s.calls[APIStableToken]
}

// ExpireTokens makes every token of appID expired now (uses answer 42001).
func (s *Sandbox) ExpireTokens(appID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	past := s.now().Add(-time.Second)
	for _, t := range s.tokens {
		if t.appID == appID {
			t.expires = past
		}
	}
	delete(s.stable, appID)
}

// RevokeTokens forgets every token of appID (uses answer 40001).
func (s *Sandbox) RevokeTokens(appID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, t := range s.tokens {
		if t.appID == appID {
			delete(s.tokens, k)
		}
	}
	delete(s.stable, appID)
}

// IssueLoginCode returns a real-style single-use login code for openID,
// valid five minutes, as wx.login would hand the mini-program.
func (s *Sandbox) IssueLoginCode(openID string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	code := randHex(16)
	s.codes[code] = &loginCode{openID: openID, unionID: UnionID(openID), expires: s.now().Add(loginCodeTTL)}
	return code
}

// IssuePhoneCode returns a single-use getPhoneNumber code for phone.
func (s *Sandbox) IssuePhoneCode(phone string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	code := "phone-" + randHex(12)
	s.codes[code] = &loginCode{openID: phone, expires: s.now().Add(loginCodeTTL)}
	return code
}

// GrantSubscribe records that the user with openID accepted templateID n
// times in wx.requestSubscribeMessage: n send credits.
func (s *Sandbox) GrantSubscribe(appID, openID, templateID string, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.credits[appID+"|"+openID+"|"+templateID] += n
}

// Credits returns the unused subscribe credits.
func (s *Sandbox) Credits(appID, openID, templateID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.credits[appID+"|"+openID+"|"+templateID]
}

// SetFollower says whether openID follows the official account appID, and
// with which QR scene it followed.
func (s *Sandbox) SetFollower(appID, openID string, follows bool, scene string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.follows[appID+"|"+openID] = follows
	if follows {
		s.scenes[openID] = scene
	}
	if !follows {
		delete(s.windows, appID+"|"+openID)
	}
}

// OpenWindow records a user message to appID from openID: it opens the
// 48-hour customer-service window and resets its reply count.
func (s *Sandbox) OpenWindow(appID, openID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.windows[appID+"|"+openID] = &window{opened: s.now()}
}

// Sent returns every recorded send attempt, oldest first.
func (s *Sandbox) Sent() []Sent {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Sent, len(s.sent))
	copy(out, s.sent)
	return out
}

// Delivered returns the attempts WeChat accepted (errcode 0).
func (s *Sandbox) Delivered() []Sent {
	var out []Sent
	for _, m := range s.Sent() {
		if m.ErrCode == 0 {
			out = append(out, m)
		}
	}
	return out
}

// DeliveredCount is len(Delivered()) without copying the record.
func (s *Sandbox) DeliveredCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.okSends
}

// Reset forgets recorded sends and faults, keeping apps, tokens and users.
func (s *Sandbox) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sent = nil
	s.okSends = 0
	s.faults = map[string][]Fault{}
	s.calls = map[string]int{}
	s.used = map[string]int{}
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// errBody is WeChat's error answer.
func errBody(code int, detail string) map[string]any {
	msg := codeMessages[code]
	if msg == "" {
		msg = "error"
	}
	if detail != "" {
		msg += " " + detail
	}
	return map[string]any{"errcode": code, "errmsg": msg + " rid: " + randHex(4)}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; encoding=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// preamble counts the call, applies any pending fault and the daily quota.
// It returns false when it has already answered.
func (s *Sandbox) preamble(w http.ResponseWriter, r *http.Request, api string) bool {
	s.mu.Lock()
	s.calls[api]++
	var f *Fault
	if q := s.faults[api]; len(q) > 0 {
		f = &q[0]
		s.faults[api] = q[1:]
	}
	day := s.now().Format("2006-01-02")
	quotaHit := false
	if f == nil {
		if limit := s.quotas[api]; limit > 0 {
			s.used[api+"|"+day]++
			quotaHit = s.used[api+"|"+day] > limit
		}
	}
	s.mu.Unlock()
	if f != nil {
		if f.Delay > 0 {
			select {
			case <-time.After(f.Delay):
			case <-r.Context().Done():
				return false
			}
		}
		if f.HTTPStatus != 0 {
			w.WriteHeader(f.HTTPStatus)
			_, _ = fmt.Fprintf(w, "<html><body>%d</body></html>", f.HTTPStatus)
			return false
		}
		if f.ErrCode != 0 {
			s.recordFailedSend(api, r, f.ErrCode)
			writeJSON(w, http.StatusOK, errBody(f.ErrCode, "(sandbox fault)"))
			return false
		}
	}
	if quotaHit {
		s.recordFailedSend(api, r, CodeDailyQuota)
		writeJSON(w, http.StatusOK, errBody(CodeDailyQuota, ""))
		return false
	}
	return true
}

// noToken marks an endpoint called without an access token (the token
// endpoints themselves, code2session); eitherApp one that both apps may
// call.
const (
	noToken   AppKind = "-"
	eitherApp AppKind = "*"
)

// api wraps an endpoint with what every endpoint does first: count the
// call, apply a pending fault and the daily quota (preamble), and, unless
// kind is noToken, check the access token of an app of that kind. h gets
// the calling app's id ("" for noToken).
func (s *Sandbox) api(name string, kind AppKind, h func(w http.ResponseWriter, r *http.Request, appID string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.preamble(w, r, name) {
			return
		}
		appID := ""
		if kind != noToken {
			var ok bool
			if appID, ok = s.checkToken(w, r, name, kind); !ok {
				return
			}
		}
		h(w, r, appID)
	}
}

// checkToken validates access_token for an API of app kind k (eitherApp:
// any) and returns the app id, or answers the error itself.
func (s *Sandbox) checkToken(w http.ResponseWriter, r *http.Request, api string, k AppKind) (string, bool) {
	tok := r.URL.Query().Get("access_token")
	s.mu.Lock()
	t := s.tokens[tok]
	now := s.now()
	s.mu.Unlock()
	code := 0
	switch {
	case tok == "":
		code = CodeMissingToken
	case t == nil:
		code = CodeInvalidCredential
	case !now.Before(t.expires):
		code = CodeTokenExpired
	case k != eitherApp && s.apps[t.appID].Kind != k:
		code = CodeAPIUnauthorized
	}
	if code != 0 {
		s.recordFailedSend(api, r, code)
		writeJSON(w, http.StatusOK, errBody(code, ""))
		return "", false
	}
	return t.appID, true
}

// recordFailedSend records a refused attempt of a send API, so that the
// record shows every attempt, not only successes.
func (s *Sandbox) recordFailedSend(api string, r *http.Request, code int) {
	if !isSendAPI(api) {
		return
	}
	payload, touser := peekBody(r)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.appendSentLocked(Sent{API: api, ToUser: touser, Payload: payload, ErrCode: code, ErrMsg: codeMessages[code]})
}

func (s *Sandbox) appendSentLocked(m Sent) Sent {
	s.nextID++
	m.ID = s.nextID
	m.At = s.now()
	s.sent = append(s.sent, m)
	if m.ErrCode == 0 {
		s.okSends++
	}
	return m
}

func isSendAPI(api string) bool {
	switch api {
	case APISubscribeSend, APITemplateSend, APICustomSend, APIMassSendAll, APIMassSend, APIMassPreview:
		return true
	}
	return false
}

// Handler serves the WeChat API at its real paths.
func (s *Sandbox) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/cgi-bin/token", s.api(APIToken, noToken, s.handleToken))
	mux.HandleFunc("/cgi-bin/stable_token", s.api(APIStableToken, noToken, s.handleStableToken))
	mux.HandleFunc("/sns/jscode2session", s.api(APICode2Session, noToken, s.handleCode2Session))
	mux.HandleFunc("/wxa/business/getuserphonenumber", s.api(APIPhoneNumber, MiniProgram, s.handlePhoneNumber))
	mux.HandleFunc("/cgi-bin/message/subscribe/send", s.api(APISubscribeSend, MiniProgram, s.handleSubscribeSend))
	mux.HandleFunc("/cgi-bin/message/template/send", s.api(APITemplateSend, OfficialAccount, s.handleTemplateSend))
	// Both apps may send customer messages.
	mux.HandleFunc("/cgi-bin/message/custom/send", s.api(APICustomSend, eitherApp, s.handleCustomSend))
	mux.HandleFunc("/cgi-bin/message/mass/sendall", s.api(APIMassSendAll, OfficialAccount, s.handleMassSendAll))
	mux.HandleFunc("/cgi-bin/message/mass/send", s.api(APIMassSend, OfficialAccount, s.handleMassSend))
	mux.HandleFunc("/cgi-bin/message/mass/preview", s.api(APIMassPreview, OfficialAccount, s.handleMassPreview))
	mux.HandleFunc("/cgi-bin/message/mass/get", s.api(APIMassGet, OfficialAccount, s.handleMassGet))
	mux.HandleFunc("/cgi-bin/qrcode/create", s.api(APIQRCreate, OfficialAccount, s.handleQRCreate))
	mux.HandleFunc("/cgi-bin/menu/create", s.api(APIMenuCreate, OfficialAccount, s.handleMenuCreate))
	mux.HandleFunc("/cgi-bin/menu/get", s.api(APIMenuGet, OfficialAccount, s.handleMenuGet))
	mux.HandleFunc("/cgi-bin/menu/delete", s.api(APIMenuDelete, OfficialAccount, s.handleMenuDelete))
	mux.HandleFunc("/cgi-bin/menu/addconditional", s.api(APIMenuAddCond, OfficialAccount, s.handleMenuAddConditional))
	mux.HandleFunc("/cgi-bin/media/uploadimg", s.api(APIUploadImg, OfficialAccount, s.handleUploadImg))
	mux.HandleFunc("/cgi-bin/material/add_material", s.api(APIAddMaterial, OfficialAccount, s.handleAddMaterial))
	mux.HandleFunc("/cgi-bin/draft/add", s.api(APIDraftAdd, OfficialAccount, s.handleDraftAdd))
	mux.HandleFunc("/cgi-bin/freepublish/submit", s.api(APIFreePublish, OfficialAccount, s.handleFreePublish))
	mux.HandleFunc("/cgi-bin/freepublish/get", s.api(APIFreePublishGet, OfficialAccount, s.handleFreePublishGet))
	mux.HandleFunc("/cgi-bin/tags/create", s.api(APITagsCreate, OfficialAccount, s.handleTagsCreate))
	mux.HandleFunc("/cgi-bin/tags/get", s.api(APITagsGet, OfficialAccount, s.handleTagsGet))
	mux.HandleFunc("/cgi-bin/tags/members/batchtagging", s.api(APITagsBatchTagging, OfficialAccount, s.handleBatchTagging))
	mux.HandleFunc("/cgi-bin/tags/members/batchuntagging", s.api(APITagsBatchUntagging, OfficialAccount, s.handleBatchTagging))
	mux.HandleFunc("/cgi-bin/tags/delete", s.api(APITagsDelete, OfficialAccount, s.handleTagsDelete))
	mux.HandleFunc("/cgi-bin/user/tag/get", s.api(APIUserTagGet, OfficialAccount, s.handleUserTagGet))
	mux.HandleFunc("/cgi-bin/user/info", s.api(APIUserInfo, OfficialAccount, s.handleUserInfo))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"errcode": 48001, "errmsg": "api unauthorized (sandbox does not implement " + r.URL.Path + ")"})
	})
	return mux
}

func isDevCode(code string) (string, bool) {
	if strings.HasPrefix(code, "dev:") && len(code) > 4 {
		return code[4:], true
	}
	return "", false
}
