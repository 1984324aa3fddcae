package handler

import (
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"careloop/model"
	"careloop/notify"
	"careloop/service"
)

// notifyHandlers serves subscriptions and preferences to patients, and the
// outbox and care rules to staff.
type notifyHandlers struct {
	outbox  *notify.Outbox
	notices *service.Notices
	care    *service.CareRules
	profile *service.Profile
	// onAccept mirrors an accepted subscription into the WeChat sandbox (sandbox mode only).
	onAccept func(openID, templateID string)
}

func (h notifyHandlers) registerMP(rg *gin.RouterGroup) {
	rg.GET("/subscriptions/templates", h.sceneTemplates)
	rg.POST("/subscriptions", h.recordSubscriptions)
	rg.GET("/notification-preferences", h.preferences)
	rg.PUT("/notification-preferences", h.setPreferences)
}

func (h notifyHandlers) registerAdmin(rg *gin.RouterGroup) {
	staff := allow(service.ActNotificationsRead)
	rg.GET("/notifications", staff, h.list)
	rg.GET("/notification-reasons", staff, h.reasons)
	rg.POST("/notifications/:id/retry", allow(service.ActNotificationsFix), h.retry)
	rg.POST("/notifications/:id/cancel", allow(service.ActNotificationsFix), h.cancel)
	rg.GET("/notification-rules", allow(service.ActCareRules), h.rules)
	rg.PUT("/notification-rules", allow(service.ActCareRules), h.saveRules)
}

// SceneTemplateDTO is a template to request in wx.requestSubscribeMessage.
type SceneTemplateDTO struct {
	TemplateID string `json:"template_id"`
	Reason     string `json:"reason"`
	Title      string `json:"title"`
}

func (h notifyHandlers) sceneTemplates(c *gin.Context) {
	scene := c.Query("scene")
	known := false
	for _, s := range notify.Scenes {
		known = known || s == scene
	}
	if !known {
		fail(c, model.ErrInvalid.WithMessage("scene 只能是 booking、report、chat、survey、care、campaign"))
		return
	}
	items := []SceneTemplateDTO{}
	for _, t := range h.outbox.TemplatesForScene(scene) {
		items = append(items, SceneTemplateDTO{TemplateID: t.TemplateID, Reason: t.Reason, Title: t.Title})
	}
	c.JSON(http.StatusOK, gin.H{"items": items})
}

type subscriptionsRequest struct {
	Results map[string]string `json:"results" binding:"required"`
}

func (h notifyHandlers) recordSubscriptions(c *gin.Context) {
	var req subscriptionsRequest
	if !bindJSON(c, &req) {
		return
	}
	p := principal(c)
	credits, err := h.outbox.RecordSubscriptions(c.Request.Context(), p.ID, req.Results)
	if err != nil {
		fail(c, err)
		return
	}
	if h.onAccept != nil {
		if me, err := h.profile.Me(c.Request.Context(), p); err == nil && me.OpenID != nil {
			for id, answer := range req.Results {
				if answer == "accept" {
					h.onAccept(*me.OpenID, id)
				}
			}
		}
	}
	c.JSON(http.StatusOK, gin.H{"credits": credits})
}

func (h notifyHandlers) preferences(c *gin.Context) {
	prefs, err := h.outbox.Preferences(c.Request.Context(), principal(c).ID)
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, prefs)
}

func (h notifyHandlers) setPreferences(c *gin.Context) {
	var req struct {
		Care      *bool `json:"care"`
		Marketing *bool `json:"marketing"`
		// Service and urgent notices cannot be turned off: naming them is refused.
		Service *bool `json:"service"`
		Urgent  *bool `json:"urgent"`
	}
	if !bindJSON(c, &req) {
		return
	}
	p := principal(c)
	for cat, receive := range map[string]*bool{model.CategoryCare: req.Care, model.CategoryMarketing: req.Marketing,
		model.CategoryService: req.Service, model.CategoryUrgent: req.Urgent} {
		if receive == nil {
			continue
		}
		if err := h.outbox.SetPreference(c.Request.Context(), p.ID, cat, *receive); err != nil {
			fail(c, err)
			return
		}
	}
	h.preferences(c)
}

// NotificationDTO is an outbox row as staff see it.
type NotificationDTO struct {
	ID            uint64 `json:"id"`
	PatientID     uint64 `json:"patient_id"`
	Reason        string `json:"reason"`
	Category      string `json:"category"`
	Status        string `json:"status"`
	Channel       string `json:"channel"`
	TemplateID    string `json:"template_id"`
	DueAt         string `json:"due_at"`
	NextAttemptAt string `json:"next_attempt_at,omitempty"`
	Attempts      int    `json:"attempts"`
	LastError     string `json:"last_error"`
	MsgID         string `json:"msgid"`
	SentAt        string `json:"sent_at,omitempty"`
	CreatedAt     string `json:"created_at"`
}

func notificationDTO(n *model.Notification) NotificationDTO {
	d := NotificationDTO{ID: n.ID, PatientID: n.PatientID, Reason: n.Reason, Category: n.Category, Status: n.Status,
		Channel: n.Channel, TemplateID: n.TemplateID, DueAt: model.LocalTime(n.DueAt), Attempts: n.Attempts,
		LastError: n.LastError, MsgID: n.MsgID, CreatedAt: model.LocalTime(n.CreatedAt)}
	if n.Status == model.NotifyFailed {
		d.NextAttemptAt = d.DueAt
	}
	if n.SentAt != nil {
		d.SentAt = model.LocalTime(*n.SentAt)
	}
	return d
}

func (h notifyHandlers) list(c *gin.Context) {
	f := notify.Filter{Status: c.Query("status"), Reason: c.Query("reason"), Cursor: c.Query("cursor")}
	var ok bool
	if f.Limit, ok = queryLimit(c); !ok {
		return
	}
	f.PatientID, _ = strconv.ParseUint(c.Query("patient_id"), 10, 64)
	pg, err := h.notices.List(c.Request.Context(), principal(c), f)
	if err != nil {
		fail(c, err)
		return
	}
	items := make([]NotificationDTO, 0, len(pg.Rows))
	for i := range pg.Rows {
		items = append(items, notificationDTO(&pg.Rows[i]))
	}
	holds := gin.H{}
	for api, until := range pg.Held {
		holds[api] = model.LocalTime(until)
	}
	c.JSON(http.StatusOK, gin.H{"items": items, "next_cursor": pg.Next, "counts": pg.Counts, "held_apis": holds})
}

func (h notifyHandlers) retry(c *gin.Context) {
	id, ok := idParam(c)
	if !ok {
		return
	}
	n, err := h.notices.Retry(c.Request.Context(), principal(c), id)
	renderOne(c, http.StatusOK, n, err, notificationDTO)
}

type cancelRequest struct {
	Reason string `json:"reason"`
}

func (h notifyHandlers) cancel(c *gin.Context) {
	id, ok := idParam(c)
	if !ok {
		return
	}
	var req cancelRequest
	_ = c.ShouldBindJSON(&req)
	n, err := h.notices.Cancel(c.Request.Context(), principal(c), id, req.Reason)
	renderOne(c, http.StatusOK, n, err, notificationDTO)
}

func (h notifyHandlers) rules(c *gin.Context) {
	r, err := h.care.Settings(c.Request.Context(), principal(c))
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, r)
}

func (h notifyHandlers) saveRules(c *gin.Context) {
	var r service.CareSettings
	if !bindJSON(c, &r) {
		return
	}
	if r.Holidays == nil {
		r.Holidays = []service.Holiday{}
	}
	if err := h.care.Save(c.Request.Context(), principal(c), r); err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, r)
}

// ReasonDTO is a kind of notice and how it reaches the patient.
type ReasonDTO struct {
	Name              string       `json:"name"`
	Title             string       `json:"title"`
	Category          string       `json:"category"`
	Scene             string       `json:"scene"`
	Channels          []ChannelDTO `json:"channels"`
	NoticeOnceMinutes int          `json:"notice_once_minutes"`
}

// ChannelDTO is one way a notice goes, in fallback order.
type ChannelDTO struct {
	Channel    string `json:"channel"`
	TemplateID string `json:"template_id"`
	LongTerm   bool   `json:"long_term"`
}

func (h notifyHandlers) reasons(c *gin.Context) {
	rs, err := h.notices.Reasons(c.Request.Context(), principal(c))
	renderList(c, rs, err, func(r *notify.Reason) ReasonDTO {
		out := ReasonDTO{Name: r.Name, Title: r.Title, Category: r.Category, Scene: r.Scene, NoticeOnceMinutes: r.NoticeOnceMinutes, Channels: []ChannelDTO{}}
		for _, ch := range r.Channels {
			out.Channels = append(out.Channels, ChannelDTO{Channel: ch.Channel, TemplateID: ch.TemplateID, LongTerm: ch.LongTerm})
		}
		return out
	})
}
