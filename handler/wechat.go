package handler

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"careloop/model"
	"careloop/service"
	"careloop/wxconfig"
)

// OAConfig is what the official-account callback needs.
type OAConfig struct {
	AppID, Token string
	// AESKey set means safe mode: plaintext posts are refused.
	AESKey []byte
}

// wechatHandlers serves WeChat's callbacks.
type wechatHandlers struct {
	oa     *service.OA
	cfg    OAConfig
	log    *slog.Logger
	nonces NonceStore
}

// NonceStore remembers the callbacks seen in the last minutes, shared by
// every instance (coord.Store satisfies it).
type NonceStore interface {
	TryLock(ctx context.Context, key string, ttl time.Duration) (func(), error)
	Get(ctx context.Context, key string) (string, bool, error)
	Set(ctx context.Context, key, val string, ttl time.Duration) error
}

// fresh reports whether a plain-mode callback is not a replay: its
// timestamp and nonce are seen for the first time in the 5-minute window,
// or again with the very same body (WeChat retrying the same message, which
// the MsgId then makes a no-op). A captured signature with another body is
// a replay.
func (h wechatHandlers) fresh(ctx context.Context, ts, nonce string, body []byte) bool {
	sum := sha256.Sum256(body)
	digest := hex.EncodeToString(sum[:])
	key := "oa-nonce:" + ts + ":" + nonce
	if _, err := h.nonces.TryLock(ctx, key, 6*time.Minute); err == nil {
		if err := h.nonces.Set(ctx, key+":body", digest, 6*time.Minute); err != nil {
			h.log.Warn("oa: remember callback nonce", "err", err)
		}
		return true
	}
	seen, ok, err := h.nonces.Get(ctx, key+":body")
	return err == nil && ok && seen == digest
}

func (h wechatHandlers) register(r gin.IRoutes) {
	r.GET("/wechat/oa/callback", h.verify)
	r.POST("/wechat/oa/callback", h.callback)
}

func (h wechatHandlers) refuse(c *gin.Context, err error) {
	code := "bad_signature"
	switch {
	case errors.Is(err, wxconfig.ErrCallbackStale):
		code = "stale_timestamp"
	case errors.Is(err, wxconfig.ErrCallbackPlaintext):
		code = "plaintext_refused"
	case errors.Is(err, wxconfig.ErrCallbackDecrypt), errors.Is(err, wxconfig.ErrCallbackAppID):
		code = "bad_ciphertext"
	case errors.Is(err, wxconfig.ErrCallbackXML):
		code = "bad_message"
	case errors.Is(err, errCallbackReplayed):
		code = "replayed"
	}
	status := http.StatusForbidden
	if code == "bad_message" || code == "plaintext_refused" || code == "bad_ciphertext" {
		status = http.StatusBadRequest
	}
	h.log.Warn("official-account callback refused", "code", code, "err", err, "ip", c.ClientIP())
	c.JSON(status, ErrorBody{Error: ErrorDetail{Code: code, Message: refusalMessages[code]}})
}

// refusalMessages say in Chinese, for whoever reads the log or the answer,
// why a callback was refused.
var refusalMessages = map[string]string{
	"bad_signature":     "回调签名校验失败",
	"stale_timestamp":   "回调时间戳与当前时间相差超过 5 分钟",
	"plaintext_refused": "安全模式下不接受明文消息",
	"bad_ciphertext":    "消息无法解密，或不属于本公众号",
	"bad_message":       "不是有效的微信消息",
	"replayed":          "该回调已处理过（时间戳与随机数重复）",
}

var errCallbackReplayed = errors.New("callback timestamp and nonce seen before with another body")

// verify answers WeChat's URL check with the echo string.
func (h wechatHandlers) verify(c *gin.Context) {
	q := c.Request.URL.Query()
	if err := wxconfig.VerifyURL(h.cfg.Token, q.Get("signature"), q.Get("timestamp"), q.Get("nonce"), time.Now()); err != nil {
		h.refuse(c, err)
		return
	}
	c.String(http.StatusOK, q.Get("echostr"))
}

// callback takes a message or event: signatures and freshness checked,
// decrypted in safe mode, processed once, answered at once (a passive reply
// or "success"); slow work goes to the background.
func (h wechatHandlers) callback(c *gin.Context) {
	q := c.Request.URL.Query()
	now := time.Now()
	if err := wxconfig.VerifyURL(h.cfg.Token, q.Get("signature"), q.Get("timestamp"), q.Get("nonce"), now); err != nil {
		h.refuse(c, err)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, 1<<20))
	if err != nil {
		h.refuse(c, wxconfig.ErrCallbackXML)
		return
	}
	safe := h.cfg.AESKey != nil
	if safe {
		if q.Get("encrypt_type") != "aes" || q.Get("msg_signature") == "" {
			h.refuse(c, wxconfig.ErrCallbackPlaintext)
			return
		}
		if body, err = wxconfig.OpenSafe(h.cfg.Token, h.cfg.AESKey, h.cfg.AppID, q.Get("msg_signature"), q.Get("timestamp"), q.Get("nonce"), body); err != nil {
			h.refuse(c, err)
			return
		}
	}
	if !safe && !h.fresh(c.Request.Context(), q.Get("timestamp"), q.Get("nonce"), body) {
		// Plain mode signs only timestamp and nonce, not the body.
		h.refuse(c, errCallbackReplayed)
		return
	}
	m, err := wxconfig.ParseMessage(body)
	if err != nil {
		h.refuse(c, err)
		return
	}
	in := service.InboundMessage{DedupeKey: m.DedupeKey(), From: m.FromUserName, Type: m.MsgType, Event: m.Event,
		EventKey: m.EventKey, Content: m.Content, PicURL: m.PicURL, MsgID: m.MsgIDEvent, Status: m.Status}
	if m.Event == "MASSSENDJOBFINISH" {
		in.Mass = &wxconfig.MassResult{MsgID: strconv.FormatInt(m.MsgIDEvent, 10), Status: m.Status,
			Total: m.TotalCount, Filtered: m.FilterCount, Sent: m.SentCount, Errors: m.ErrorCount}
	}
	if m.PublishEventInfo != nil {
		r := m.PublishEventInfo.Result()
		in.Publish = &r
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), 4*time.Second)
	defer cancel()
	reply, _, err := h.oa.Handle(ctx, in)
	if err != nil {
		fail(c, err)
		return
	}
	if reply == "" {
		c.String(http.StatusOK, "success")
		return
	}
	out := wxconfig.TextReply(m.FromUserName, m.ToUserName, reply, now)
	if safe {
		if out, err = wxconfig.SealReply(h.cfg.Token, h.cfg.AESKey, h.cfg.AppID, out, now); err != nil {
			fail(c, err)
			return
		}
	}
	c.Data(http.StatusOK, "application/xml; charset=utf-8", out)
}

// oaAdmin serves marketing's settings of the official account.
type oaAdmin struct {
	oa    *service.OA
	menus service.OAMenus
}

func (h oaAdmin) register(rg *gin.RouterGroup) {
	mkt := allow(service.ActOAManage)
	rg.GET("/oa/auto-replies", mkt, h.list)
	rg.POST("/oa/auto-replies", mkt, h.create)
	rg.DELETE("/oa/auto-replies/:id", mkt, h.delete)
	rg.PUT("/oa/welcome", mkt, h.welcome)
	rg.GET("/oa/menu", mkt, h.menu)
	rg.PUT("/oa/menu", mkt, h.saveMenu)
	rg.POST("/oa/menu/publish", mkt, h.publishMenu)
}

func (h oaAdmin) menu(c *gin.Context) {
	m, err := h.oa.LoadMenu(c.Request.Context(), principal(c))
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, m)
}

func (h oaAdmin) saveMenu(c *gin.Context) {
	var m service.Menu
	if !bindJSON(c, &m) {
		return
	}
	if err := h.oa.SaveMenu(c.Request.Context(), principal(c), m); err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, m)
}

func (h oaAdmin) publishMenu(c *gin.Context) {
	if err := h.oa.PublishMenu(c.Request.Context(), principal(c), h.menus); err != nil {
		fail(c, err)
		return
	}
	h.menu(c) // what WeChat now shows
}

func (h oaAdmin) list(c *gin.Context) {
	rs, err := h.oa.AutoReplies(c.Request.Context(), principal(c))
	if err != nil {
		fail(c, err)
		return
	}
	items := make([]gin.H, 0, len(rs))
	for _, r := range rs {
		items = append(items, gin.H{"id": r.ID, "keyword": r.Keyword, "match": r.Match, "priority": r.Priority, "reply": r.Reply, "active": r.Active})
	}
	c.JSON(http.StatusOK, gin.H{"items": items, "next_cursor": ""})
}

type autoReplyRequest struct {
	Keyword  string `json:"keyword" binding:"required"`
	Match    string `json:"match" binding:"required"`
	Priority int    `json:"priority"`
	Reply    string `json:"reply" binding:"required"`
}

func (h oaAdmin) create(c *gin.Context) {
	var req autoReplyRequest
	if !bindJSON(c, &req) {
		return
	}
	r, err := h.oa.SaveAutoReply(c.Request.Context(), principal(c), model.AutoReply{Keyword: req.Keyword, Match: req.Match, Priority: req.Priority, Reply: req.Reply})
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusCreated, gin.H{"id": r.ID, "keyword": r.Keyword, "match": r.Match, "priority": r.Priority, "reply": r.Reply, "active": r.Active})
}

func (h oaAdmin) delete(c *gin.Context) {
	id, ok := idParam(c)
	if !ok {
		return
	}
	noContent(c, h.oa.DeleteAutoReply(c.Request.Context(), principal(c), id))
}

type welcomeRequest struct {
	Text string `json:"text" binding:"required"`
}

func (h oaAdmin) welcome(c *gin.Context) {
	var req welcomeRequest
	if !bindJSON(c, &req) {
		return
	}
	if err := h.oa.SetWelcome(c.Request.Context(), principal(c), req.Text); err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"text": strings.TrimSpace(req.Text)})
}
