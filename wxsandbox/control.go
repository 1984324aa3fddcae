package wxsandbox

import (
	"encoding/json"
	"net/http"
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
func (s *Sandbox) ControlHandler(oaAppID, mpAppID string) http.Handler {
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
	mux.HandleFunc("POST /reset", func(w http.ResponseWriter, r *http.Request) {
		s.Reset()
		w.WriteHeader(http.StatusNoContent)
	})
	return mux
}
