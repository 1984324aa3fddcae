package wxsandbox

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// ControlHandler serves the sandbox's own control API, which careloop mounts
// under /sandbox/wechat in sandbox mode:
//
//	GET  /messages   every send attempt as {"items": [...]}
//	POST /faults     {"api","count","errcode","http_status","delay_ms"}
//	POST /subscribe  {"openid","template_id","count"}: the user accepted a template
//	POST /follow     {"openid","follow","scene"}: (un)follow the official account
//	POST /reset      forget recorded messages and faults
//	POST /events/withhold {"event","count"}: the next count job events
//	                 (PUBLISHJOBFINISH, MASSSENDJOBFINISH) never come
//
// and plays the patient's side of the official account: it builds the
// callback exactly as WeChat does (signed, and encrypted in safe mode),
// posts it to the server (Deliver), updates its own state as WeChat would
// (the follower, the 48-hour window) and answers what the server replied:
//
//	POST /oa/user-message {"openid","content"}   a text message
//	POST /oa/user-image   {"openid","pic_url"}   a picture
//	POST /oa/event        {"openid","event","key"}: subscribe, unsubscribe, SCAN, CLICK
//	POST /oa/scan         {"openid","scene"}: a scan of a QR code (subscribe for a new follower, SCAN otherwise)
func (s *Sandbox) ControlHandler(o ControlOptions) http.Handler {
	oaAppID, mpAppID := o.OAAppID, o.MPAppID
	mux := http.NewServeMux()
	mux.HandleFunc("GET /messages", func(w http.ResponseWriter, r *http.Request) {
		items := s.Sent()
		if items == nil {
			items = []Sent{}
		}
		writeJSON(w, http.StatusOK, map[string]any{"items": items})
	})
	mux.HandleFunc("POST /faults", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			API        string `json:"api"`
			Count      int    `json:"count"`
			ErrCode    int    `json:"errcode"`
			HTTPStatus int    `json:"http_status"`
			DelayMS    int    `json:"delay_ms"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.API == "" || req.Count <= 0 {
			writeJSON(w, http.StatusBadRequest, map[string]any{"error": map[string]string{"code": "invalid_request", "message": "需要 api 和 count"}})
			return
		}
		s.FailNext(req.API, req.Count, Fault{ErrCode: req.ErrCode, HTTPStatus: req.HTTPStatus, Delay: time.Duration(req.DelayMS) * time.Millisecond})
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /subscribe", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			OpenID     string `json:"openid"`
			TemplateID string `json:"template_id"`
			Count      int    `json:"count"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.OpenID == "" || req.TemplateID == "" {
			writeJSON(w, http.StatusBadRequest, map[string]any{"error": map[string]string{"code": "invalid_request", "message": "需要 openid 和 template_id"}})
			return
		}
		if req.Count <= 0 {
			req.Count = 1
		}
		s.GrantSubscribe(mpAppID, req.OpenID, req.TemplateID, req.Count)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /follow", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			OpenID string `json:"openid"`
			Follow *bool  `json:"follow"`
			Scene  string `json:"scene"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.OpenID == "" {
			writeJSON(w, http.StatusBadRequest, map[string]any{"error": map[string]string{"code": "invalid_request", "message": "需要 openid"}})
			return
		}
		follow := req.Follow == nil || *req.Follow
		s.SetFollower(oaAppID, req.OpenID, follow, req.Scene)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /events/withhold", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Event string `json:"event"`
			Count int    `json:"count"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || (req.Event != "PUBLISHJOBFINISH" && req.Event != "MASSSENDJOBFINISH") || req.Count <= 0 {
			badRequest(w, "需要 event（PUBLISHJOBFINISH 或 MASSSENDJOBFINISH）和 count")
			return
		}
		s.WithholdEvents(req.Event, req.Count)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /reset", func(w http.ResponseWriter, r *http.Request) {
		s.Reset()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /oa/user-message", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			OpenID  string `json:"openid"`
			Content string `json:"content"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.OpenID == "" || strings.TrimSpace(req.Content) == "" {
			badRequest(w, "需要 openid 和 content")
			return
		}
		now := s.now()
		s.OpenWindow(oaAppID, req.OpenID) // a user's message opens the 48-hour window
		s.deliver(w, o, TextMessage(req.OpenID, req.Content, s.nextMsgID(), now), now)
	})
	mux.HandleFunc("POST /oa/user-image", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			OpenID string `json:"openid"`
			PicURL string `json:"pic_url"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.OpenID == "" || !strings.HasPrefix(req.PicURL, "http") {
			badRequest(w, "需要 openid 和 pic_url（http 地址）")
			return
		}
		now := s.now()
		s.OpenWindow(oaAppID, req.OpenID)
		s.deliver(w, o, ImageMessage(req.OpenID, req.PicURL, s.nextMsgID(), now), now)
	})
	mux.HandleFunc("POST /oa/scan", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			OpenID string `json:"openid"`
			Scene  string `json:"scene"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.OpenID == "" || req.Scene == "" {
			badRequest(w, "需要 openid 和 scene")
			return
		}
		// As WeChat: a new follower's scan is a subscribe with the scene,
		// a follower's a SCAN.
		now := s.now()
		s.mu.Lock()
		follows := s.follows[oaAppID+"|"+req.OpenID]
		s.mu.Unlock()
		if follows {
			s.deliver(w, o, EventMessage(req.OpenID, "SCAN", req.Scene, now, ""), now)
			return
		}
		s.SetFollower(oaAppID, req.OpenID, true, req.Scene)
		s.deliver(w, o, EventMessage(req.OpenID, "subscribe", "qrscene_"+req.Scene, now, ""), now)
	})
	mux.HandleFunc("POST /oa/event", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			OpenID string `json:"openid"`
			Event  string `json:"event"`
			Key    string `json:"key"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.OpenID == "" {
			badRequest(w, "需要 openid 和 event")
			return
		}
		key := req.Key
		switch req.Event {
		case "subscribe":
			if key != "" && !strings.HasPrefix(key, "qrscene_") {
				key = "qrscene_" + key // WeChat's form for a QR scene
			}
			s.SetFollower(oaAppID, req.OpenID, true, strings.TrimPrefix(key, "qrscene_"))
		case "unsubscribe":
			s.SetFollower(oaAppID, req.OpenID, false, "")
		case "SCAN", "CLICK":
		default:
			badRequest(w, "event 只能是 subscribe、unsubscribe、SCAN 或 CLICK")
			return
		}
		now := s.now()
		s.deliver(w, o, EventMessage(req.OpenID, req.Event, key, now, ""), now)
	})
	return mux
}

// ControlOptions configure the control API: the apps it stands for and,
// to play the patient's side, how to reach the server's callback.
type ControlOptions struct {
	OAAppID, MPAppID string
	// Token, AESKey and Safe are the official account's message settings.
	Token, AESKey string
	Safe          bool
	// Deliver posts a callback to the server and returns its HTTP status
	// and body.
	Deliver func(q url.Values, body []byte) (int, []byte)
}

// deliver builds the callback for msg, posts it and answers what the
// server said: {"status", "reply"}.
func (s *Sandbox) deliver(w http.ResponseWriter, o ControlOptions, msg []byte, at time.Time) {
	if o.Deliver == nil {
		writeJSON(w, http.StatusNotImplemented, map[string]any{"error": map[string]string{"code": "no_server", "message": "沙箱未连接到公众号回调"}})
		return
	}
	cb, err := BuildCallback(o.Token, o.AESKey, o.OAAppID, msg, o.Safe, at)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]any{"error": map[string]string{"code": "bad_config", "message": err.Error()}})
		return
	}
	status, body := o.Deliver(cb.Query, cb.Body)
	out := map[string]any{"status": status, "reply": ""}
	if status == http.StatusOK {
		reply, err := ReplyText(o.Token, o.AESKey, o.OAAppID, body, o.Safe)
		if err != nil {
			out["reply_error"] = err.Error() // as WeChat would: the reply is not shown
		}
		out["reply"] = reply
	} else {
		out["body"] = string(body)
	}
	writeJSON(w, http.StatusOK, out)
}

func badRequest(w http.ResponseWriter, msg string) {
	writeJSON(w, http.StatusBadRequest, map[string]any{"error": map[string]string{"code": "invalid_request", "message": msg}})
}

// nextMsgID numbers the user messages the sandbox sends, as WeChat's MsgId.
func (s *Sandbox) nextMsgID() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.msgSeq++
	return time.Now().UnixMilli()*1000 + s.msgSeq%1000
}
