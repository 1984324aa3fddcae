package wxsandbox

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// peekBody reads the request body, puts it back, and picks out "touser".
func peekBody(r *http.Request) (json.RawMessage, string) {
	if r.Body == nil {
		return nil, ""
	}
	b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	r.Body = io.NopCloser(bytes.NewReader(b))
	var probe struct {
		ToUser string `json:"touser"`
	}
	_ = json.Unmarshal(b, &probe)
	if !json.Valid(b) {
		b, _ = json.Marshal(string(b))
	}
	return b, probe.ToUser
}

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	b, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err == nil {
		err = json.Unmarshal(b, v)
	}
	if err != nil {
		writeJSON(w, http.StatusOK, map[string]any{"errcode": 47001, "errmsg": "data format error"})
		return false
	}
	return true
}

func (s *Sandbox) mintLocked(appID string, stable bool) (string, time.Duration) {
	tok := "sbx_" + randHex(24)
	s.tokens[tok] = &token{appID: appID, expires: s.now().Add(tokenTTL), stable: stable}
	// A new token leaves the previous ones valid for five minutes at most.
	limit := s.now().Add(tokenOverlap)
	for k, t := range s.tokens {
		if k != tok && t.appID == appID && t.stable == stable && t.expires.After(limit) {
			t.expires = limit
		}
	}
	return tok, tokenTTL
}

// appSecretCode checks appid and secret and returns the error code, if any.
func (s *Sandbox) appSecretCode(appID, secret string) int {
	a, ok := s.apps[appID]
	if !ok {
		return CodeInvalidAppID
	}
	if a.Secret != secret {
		return CodeInvalidCredential
	}
	return 0
}

func (s *Sandbox) handleToken(w http.ResponseWriter, r *http.Request, _ string) {
	q := r.URL.Query()
	if q.Get("grant_type") != "client_credential" {
		writeJSON(w, http.StatusOK, map[string]any{"errcode": 40002, "errmsg": "invalid grant_type"})
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if code := s.appSecretCode(q.Get("appid"), q.Get("secret")); code != 0 {
		writeJSON(w, http.StatusOK, errBody(code, ""))
		return
	}
	tok, ttl := s.mintLocked(q.Get("appid"), false)
	writeJSON(w, http.StatusOK, map[string]any{"access_token": tok, "expires_in": int(ttl.Seconds())})
}

func (s *Sandbox) handleStableToken(w http.ResponseWriter, r *http.Request, _ string) {
	var req struct {
		GrantType    string `json:"grant_type"`
		AppID        string `json:"appid"`
		Secret       string `json:"secret"`
		ForceRefresh bool   `json:"force_refresh"`
	}
	if !decode(w, r, &req) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if code := s.appSecretCode(req.AppID, req.Secret); code != 0 {
		writeJSON(w, http.StatusOK, errBody(code, ""))
		return
	}
	now := s.now()
	if cur, ok := s.stable[req.AppID]; ok && !req.ForceRefresh {
		// Within its life the same stable token is returned to every caller.
		if t := s.tokens[cur]; t != nil && t.expires.Sub(now) > tokenOverlap {
			writeJSON(w, http.StatusOK, map[string]any{"access_token": cur, "expires_in": int(t.expires.Sub(now).Seconds())})
			return
		}
	}
	tok, ttl := s.mintLocked(req.AppID, true)
	s.stable[req.AppID] = tok
	writeJSON(w, http.StatusOK, map[string]any{"access_token": tok, "expires_in": int(ttl.Seconds())})
}

func (s *Sandbox) handleCode2Session(w http.ResponseWriter, r *http.Request, _ string) {
	q := r.URL.Query()
	s.mu.Lock()
	defer s.mu.Unlock()
	if code := s.appSecretCode(q.Get("appid"), q.Get("secret")); code != 0 {
		writeJSON(w, http.StatusOK, errBody(code, ""))
		return
	}
	if s.apps[q.Get("appid")].Kind != MiniProgram {
		writeJSON(w, http.StatusOK, errBody(CodeAPIUnauthorized, ""))
		return
	}
	jsCode := q.Get("js_code")
	if name, ok := isDevCode(jsCode); ok && s.devLogins {
		writeJSON(w, http.StatusOK, map[string]any{"openid": name, "session_key": randHex(12), "unionid": UnionID(name)})
		return
	}
	c := s.codes[jsCode]
	switch {
	case c == nil || strings.HasPrefix(jsCode, "phone-"):
		writeJSON(w, http.StatusOK, errBody(CodeInvalidCode, ""))
	case c.used:
		writeJSON(w, http.StatusOK, errBody(CodeCodeUsed, ""))
	case !s.now().Before(c.expires):
		writeJSON(w, http.StatusOK, errBody(CodeInvalidCode, "(expired)"))
	default:
		c.used = true
		writeJSON(w, http.StatusOK, map[string]any{"openid": c.openID, "session_key": randHex(12), "unionid": c.unionID})
	}
}

func (s *Sandbox) handlePhoneNumber(w http.ResponseWriter, r *http.Request, appID string) {
	var req struct {
		Code string `json:"code"`
	}
	if !decode(w, r, &req) {
		return
	}
	phone := ""
	s.mu.Lock()
	if p, ok := isDevCode(req.Code); ok && s.devLogins {
		phone = p
	} else if c := s.codes[req.Code]; c != nil && strings.HasPrefix(req.Code, "phone-") && !c.used && s.now().Before(c.expires) {
		c.used = true
		phone = c.openID
	}
	now := s.now()
	s.mu.Unlock()
	if phone == "" {
		writeJSON(w, http.StatusOK, errBody(CodeInvalidCode, ""))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"errcode": 0, "errmsg": "ok", "phone_info": map[string]any{
		"phoneNumber": phone, "purePhoneNumber": phone, "countryCode": "86",
		"watermark": map[string]any{"timestamp": now.Unix(), "appid": appID},
	}})
}

// dataField is one template field as sent: {"value": "..."}.
type dataField struct {
	Value string `json:"value"`
	Color string `json:"color,omitempty"`
}

var (
	fieldKey   = regexp.MustCompile(`^([a-z_]+?)(\d+)$`)
	numberRe   = regexp.MustCompile(`^-?\d+(\.\d+)?$`)
	letterRe   = regexp.MustCompile(`^[A-Za-z]+$`)
	charStrRe  = regexp.MustCompile(`^[A-Za-z0-9_\-.: ]+$`)
	phoneRe    = regexp.MustCompile(`^[0-9+\-() ]+$`)
	amountRe   = regexp.MustCompile(`^[¥￥]?\d+(\.\d{1,2})?元?$`)
	timeLayout = []string{"2006-01-02 15:04", "2006-01-02 15:04:05", "2006年01月02日 15:04", "15:04", "2006-01-02", "2006年01月02日", "2006年1月2日 15:04", "2006年1月2日"}
)

// checkSubscribeData applies WeChat's per-type rules for subscribe message
// fields; the key's prefix says the type.
func checkSubscribeData(data map[string]dataField) string {
	if len(data) == 0 {
		return "data is empty"
	}
	for k, f := range data {
		m := fieldKey.FindStringSubmatch(k)
		if m == nil {
			return "data." + k + " invalid key"
		}
		v, n := f.Value, utf8.RuneCountInString(f.Value)
		bad := false
		switch m[1] {
		case "thing":
			bad = n == 0 || n > 20
		case "number":
			bad = n > 32 || !numberRe.MatchString(v)
		case "letter":
			bad = n > 32 || !letterRe.MatchString(v)
		case "symbol":
			bad = n > 5
		case "character_string":
			bad = n > 32 || !charStrRe.MatchString(v)
		case "time", "date":
			bad = !parsesAsTime(v)
		case "amount":
			bad = !amountRe.MatchString(v)
		case "phone_number":
			bad = n > 17 || !phoneRe.MatchString(v)
		case "car_number":
			bad = n > 8
		case "name":
			bad = n == 0 || n > 10
		case "phrase":
			bad = n == 0 || n > 5
		case "short_thing":
			bad = n == 0 || n > 5
		default:
			return "data." + k + " unknown type"
		}
		if bad {
			return "data." + k + ".value invalid"
		}
	}
	return ""
}

func parsesAsTime(v string) bool {
	// WeChat accepts a time or a range "a ~ b".
	for _, part := range strings.Split(v, "~") {
		part = strings.TrimSpace(part)
		ok := false
		for _, l := range timeLayout {
			if _, err := time.Parse(l, part); err == nil {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

func (s *Sandbox) handleSubscribeSend(w http.ResponseWriter, r *http.Request, appID string) {
	payload, _ := peekBody(r)
	var req struct {
		ToUser     string               `json:"touser"`
		TemplateID string               `json:"template_id"`
		Page       string               `json:"page"`
		Data       map[string]dataField `json:"data"`
	}
	if !decode(w, r, &req) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rec := Sent{API: APISubscribeSend, AppID: appID, ToUser: req.ToUser, Payload: payload}
	tmpl, known := s.tmpls[req.TemplateID]
	key := appID + "|" + req.ToUser + "|" + req.TemplateID
	detail := ""
	switch {
	case req.ToUser == "":
		rec.ErrCode = CodeInvalidOpenID
	case !known:
		rec.ErrCode = CodeInvalidTemplate
	default:
		if detail = checkSubscribeData(req.Data); detail != "" {
			rec.ErrCode = CodeArgumentInvalid
		} else if !tmpl.LongTerm && s.credits[key] <= 0 {
			rec.ErrCode = CodeSubscribeRefused
		}
	}
	if rec.ErrCode != 0 {
		body := errBody(rec.ErrCode, detail)
		rec.ErrMsg = body["errmsg"].(string)
		s.appendSentLocked(rec)
		writeJSON(w, http.StatusOK, body)
		return
	}
	if !tmpl.LongTerm {
		s.credits[key]--
	}
	rec.MsgID = s.nextID + 1000001
	rec.ErrMsg = "ok"
	s.appendSentLocked(rec)
	writeJSON(w, http.StatusOK, map[string]any{"errcode": 0, "errmsg": "ok", "msgid": rec.MsgID})
}

func (s *Sandbox) handleTemplateSend(w http.ResponseWriter, r *http.Request, appID string) {
	payload, _ := peekBody(r)
	var req struct {
		ToUser      string               `json:"touser"`
		TemplateID  string               `json:"template_id"`
		Data        map[string]dataField `json:"data"`
		ClientMsgID string               `json:"client_msg_id"`
	}
	if !decode(w, r, &req) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rec := Sent{API: APITemplateSend, AppID: appID, ToUser: req.ToUser, Payload: payload}
	_, known := s.tmpls[req.TemplateID]
	switch {
	case req.ToUser == "":
		rec.ErrCode = CodeInvalidOpenID
	case !known:
		rec.ErrCode = CodeInvalidTemplate
	case len(req.Data) == 0:
		rec.ErrCode = CodeArgumentInvalid
	case !s.follows[appID+"|"+req.ToUser]:
		rec.ErrCode = CodeRequireSubscribe
	}
	if rec.ErrCode != 0 {
		body := errBody(rec.ErrCode, "")
		rec.ErrMsg = body["errmsg"].(string)
		s.appendSentLocked(rec)
		writeJSON(w, http.StatusOK, body)
		return
	}
	// client_msg_id: one message per openid and id within ten minutes.
	if req.ClientMsgID != "" {
		dk := appID + "|" + req.ToUser + "|" + req.ClientMsgID
		if prev, ok := s.dedupe[dk]; ok && s.now().Sub(prev.at) < templateDedupeWindow {
			writeJSON(w, http.StatusOK, map[string]any{"errcode": 0, "errmsg": "ok", "msgid": prev.msgID})
			return
		}
		defer func() { s.dedupe[dk] = sentRef{msgID: rec.MsgID, at: s.now()} }()
	}
	rec.MsgID = s.nextID + 2000001
	rec.ErrMsg = "ok"
	s.appendSentLocked(rec)
	writeJSON(w, http.StatusOK, map[string]any{"errcode": 0, "errmsg": "ok", "msgid": rec.MsgID})
}

func (s *Sandbox) handleCustomSend(w http.ResponseWriter, r *http.Request, appID string) {
	s.mu.Lock()
	kind := s.apps[appID].Kind
	s.mu.Unlock()
	payload, _ := peekBody(r)
	var req struct {
		ToUser  string `json:"touser"`
		MsgType string `json:"msgtype"`
	}
	if !decode(w, r, &req) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rec := Sent{API: APICustomSend, AppID: appID, ToUser: req.ToUser, Payload: payload}
	win := s.windows[appID+"|"+req.ToUser]
	switch {
	case req.ToUser == "":
		rec.ErrCode = CodeInvalidOpenID
	case req.MsgType == "":
		rec.ErrCode = CodeArgumentInvalid
	case win == nil || s.now().Sub(win.opened) >= windowTTL:
		rec.ErrCode = CodeWindowClosed
	case kind == OfficialAccount && !s.follows[appID+"|"+req.ToUser]:
		rec.ErrCode = CodeWindowClosed
	case win.replies >= windowMaxReplies:
		rec.ErrCode = CodeWindowCountUsed
	}
	if rec.ErrCode != 0 {
		body := errBody(rec.ErrCode, "")
		rec.ErrMsg = body["errmsg"].(string)
		s.appendSentLocked(rec)
		writeJSON(w, http.StatusOK, body)
		return
	}
	win.replies++
	rec.ErrMsg = "ok"
	s.appendSentLocked(rec)
	writeJSON(w, http.StatusOK, map[string]any{"errcode": 0, "errmsg": "ok"})
}

func (s *Sandbox) handleMenuCreate(w http.ResponseWriter, r *http.Request, _ string) {
	raw, _ := peekBody(r)
	var req struct {
		Button []struct {
			Name      string            `json:"name"`
			SubButton []json.RawMessage `json:"sub_button"`
		} `json:"button"`
	}
	if !decode(w, r, &req) {
		return
	}
	if len(req.Button) == 0 || len(req.Button) > 3 {
		writeJSON(w, http.StatusOK, errBody(CodeInvalidMenu, ""))
		return
	}
	for _, b := range req.Button {
		if len(b.SubButton) > 5 {
			writeJSON(w, http.StatusOK, map[string]any{"errcode": 40017, "errmsg": "invalid sub button size"})
			return
		}
	}
	s.mu.Lock()
	s.menu = raw
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"errcode": 0, "errmsg": "ok"})
}

func (s *Sandbox) handleMenuGet(w http.ResponseWriter, r *http.Request, _ string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.menu == nil {
		writeJSON(w, http.StatusOK, map[string]any{"errcode": 46003, "errmsg": "menu no exist"})
		return
	}
	var cond []json.RawMessage
	for _, m := range s.condMenu {
		cond = append(cond, m)
	}
	writeJSON(w, http.StatusOK, map[string]any{"menu": s.menu, "conditionalmenu": cond})
}

func (s *Sandbox) handleMenuDelete(w http.ResponseWriter, r *http.Request, _ string) {
	s.mu.Lock()
	s.menu = nil
	s.condMenu = map[string]json.RawMessage{}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"errcode": 0, "errmsg": "ok"})
}

func (s *Sandbox) handleMenuAddConditional(w http.ResponseWriter, r *http.Request, _ string) {
	raw, _ := peekBody(r)
	var req struct {
		Button    []json.RawMessage `json:"button"`
		MatchRule map[string]any    `json:"matchrule"`
	}
	if !decode(w, r, &req) {
		return
	}
	if len(req.Button) == 0 || len(req.Button) > 3 || len(req.MatchRule) == 0 {
		writeJSON(w, http.StatusOK, errBody(CodeInvalidMenu, ""))
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.menu == nil {
		writeJSON(w, http.StatusOK, map[string]any{"errcode": 65303, "errmsg": "there is no selfmenu, please create selfmenu first"})
		return
	}
	id := strconv.Itoa(400000000 + len(s.condMenu) + 1)
	s.condMenu[id] = raw
	writeJSON(w, http.StatusOK, map[string]any{"menuid": id})
}

func (s *Sandbox) handleTagsCreate(w http.ResponseWriter, r *http.Request, _ string) {
	var req struct {
		Tag struct {
			Name string `json:"name"`
		} `json:"tag"`
	}
	if !decode(w, r, &req) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if req.Tag.Name == "" || utf8.RuneCountInString(req.Tag.Name) > 30 {
		writeJSON(w, http.StatusOK, map[string]any{"errcode": 45158, "errmsg": "tag name too long"})
		return
	}
	for _, n := range s.tags {
		if n == req.Tag.Name {
			writeJSON(w, http.StatusOK, map[string]any{"errcode": 45157, "errmsg": "invalid tag name"})
			return
		}
	}
	id := 100 + len(s.tags)
	for s.tags[id] != "" {
		id++
	}
	s.tags[id] = req.Tag.Name
	writeJSON(w, http.StatusOK, map[string]any{"tag": map[string]any{"id": id, "name": req.Tag.Name}})
}

func (s *Sandbox) handleTagsGet(w http.ResponseWriter, r *http.Request, _ string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	tags := []map[string]any{}
	for id, n := range s.tags {
		tags = append(tags, map[string]any{"id": id, "name": n, "count": len(s.tagged[id])})
	}
	writeJSON(w, http.StatusOK, map[string]any{"tags": tags})
}

func (s *Sandbox) handleBatchTagging(w http.ResponseWriter, r *http.Request, _ string) {
	var req struct {
		OpenIDList []string `json:"openid_list"`
		TagID      int      `json:"tagid"`
	}
	if !decode(w, r, &req) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.tags[req.TagID]; !ok {
		writeJSON(w, http.StatusOK, map[string]any{"errcode": 45159, "errmsg": "invalid tag id"})
		return
	}
	if len(req.OpenIDList) == 0 || len(req.OpenIDList) > 50 {
		writeJSON(w, http.StatusOK, map[string]any{"errcode": 40032, "errmsg": "invalid openid list size"})
		return
	}
	if s.tagged[req.TagID] == nil {
		s.tagged[req.TagID] = map[string]bool{}
	}
	untag := strings.HasSuffix(r.URL.Path, "batchuntagging")
	if !untag {
		// A follower holds at most 20 tags: WeChat refuses the whole call.
		for _, o := range req.OpenIDList {
			if !s.tagged[req.TagID][o] && s.userTagCountLocked(o) >= 20 {
				writeJSON(w, http.StatusOK, map[string]any{"errcode": 45059, "errmsg": "has tag count limit"})
				return
			}
		}
	}
	for _, o := range req.OpenIDList {
		if untag {
			delete(s.tagged[req.TagID], o)
		} else {
			s.tagged[req.TagID][o] = true
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"errcode": 0, "errmsg": "ok"})
}

func (s *Sandbox) userTagCountLocked(openID string) int {
	n := 0
	for _, members := range s.tagged {
		if members[openID] {
			n++
		}
	}
	return n
}

// TaggedWith returns the openids WeChat holds under user tag id.
func (s *Sandbox) TaggedWith(id int) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for o := range s.tagged[id] {
		out = append(out, o)
	}
	return out
}

// TagUser puts user tag named name (made when missing) on openID, as staff
// could in WeChat's own back office.
func (s *Sandbox) TagUser(openID, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := 0
	for tid, n := range s.tags {
		if n == name {
			id = tid
		}
	}
	if id == 0 {
		id = 100 + len(s.tags)
		for s.tags[id] != "" {
			id++
		}
		s.tags[id] = name
	}
	if s.tagged[id] == nil {
		s.tagged[id] = map[string]bool{}
	}
	s.tagged[id][openID] = true
}

func (s *Sandbox) handleTagsDelete(w http.ResponseWriter, r *http.Request, _ string) {
	var req struct {
		Tag struct {
			ID int `json:"id"`
		} `json:"tag"`
	}
	if !decode(w, r, &req) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.tags[req.Tag.ID]; !ok {
		writeJSON(w, http.StatusOK, map[string]any{"errcode": 45159, "errmsg": "invalid tag id"})
		return
	}
	delete(s.tags, req.Tag.ID)
	delete(s.tagged, req.Tag.ID)
	writeJSON(w, http.StatusOK, map[string]any{"errcode": 0, "errmsg": "ok"})
}

func (s *Sandbox) handleUserTagGet(w http.ResponseWriter, r *http.Request, _ string) {
	var req struct {
		TagID int `json:"tagid"`
	}
	if !decode(w, r, &req) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.tags[req.TagID]; !ok {
		writeJSON(w, http.StatusOK, map[string]any{"errcode": 45159, "errmsg": "invalid tag id"})
		return
	}
	ids := []string{}
	for o := range s.tagged[req.TagID] {
		ids = append(ids, o)
	}
	writeJSON(w, http.StatusOK, map[string]any{"count": len(ids), "data": map[string]any{"openid": ids}, "next_openid": ""})
}

func (s *Sandbox) handleUserInfo(w http.ResponseWriter, r *http.Request, appID string) {
	openID := r.URL.Query().Get("openid")
	if openID == "" {
		writeJSON(w, http.StatusOK, errBody(CodeInvalidOpenID, ""))
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.follows[appID+"|"+openID] {
		writeJSON(w, http.StatusOK, map[string]any{"subscribe": 0, "openid": openID})
		return
	}
	union := ""
	if mp, ok := strings.CutPrefix(openID, "oa-"); ok {
		union = UnionID(mp)
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"subscribe": 1, "openid": openID, "language": "zh_CN", "subscribe_time": s.now().Unix(),
		"unionid": union, "remark": "", "groupid": 0, "tagid_list": []int{},
		"subscribe_scene": "ADD_SCENE_QR_CODE", "qr_scene": 0, "qr_scene_str": s.scenes[openID],
	})
}
