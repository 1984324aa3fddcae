package wxsandbox

import (
	"net/http"
	"unicode/utf8"
)

// APIQRCreate is qrcode/create.
const APIQRCreate = "qrcode_create"

// handleQRCreate makes a parametric QR code: QR_LIMIT_STR_SCENE
// (permanent) or QR_STR_SCENE (temporary, expire_seconds up to 30 days,
// 30 s when absent), scene_str of 1 to 64 characters.
func (s *Sandbox) handleQRCreate(w http.ResponseWriter, r *http.Request, _ string) {
	var req struct {
		ActionName    string `json:"action_name"`
		ExpireSeconds int    `json:"expire_seconds"`
		ActionInfo    struct {
			Scene struct {
				SceneStr string `json:"scene_str"`
			} `json:"scene"`
		} `json:"action_info"`
	}
	if !decode(w, r, &req) {
		return
	}
	scene := req.ActionInfo.Scene.SceneStr
	if n := utf8.RuneCountInString(scene); n == 0 || n > 64 {
		writeJSON(w, http.StatusOK, errBody(CodeArgumentInvalid, "scene_str"))
		return
	}
	out := map[string]any{}
	switch req.ActionName {
	case "QR_LIMIT_STR_SCENE":
	case "QR_STR_SCENE":
		exp := req.ExpireSeconds
		if exp == 0 {
			exp = 30
		}
		if exp > 2592000 {
			exp = 2592000
		}
		out["expire_seconds"] = exp
	default:
		writeJSON(w, http.StatusOK, errBody(CodeArgumentInvalid, "action_name"))
		return
	}
	ticket := "gQ" + randHex(24)
	out["ticket"], out["url"] = ticket, "http://weixin.qq.com/q/sandbox"+randHex(10)
	s.mu.Lock()
	s.qrScenes[ticket] = scene
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}
