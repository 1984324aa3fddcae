package handler

import (
	"net/http"

	"github.com/gin-gonic/gin"

	"careloop/model"
	"careloop/service"
)

// massHandlers serve mass sends (群发) and article previews.
type massHandlers struct {
	m *service.MassSends
	a *service.Articles
}

func (h massHandlers) register(rg *gin.RouterGroup) {
	may := allow(service.ActMassSend)
	rg.GET("/mass-sends", may, h.list)
	rg.POST("/mass-sends", may, h.create)
	rg.GET("/mass-sends/:id", may, h.get)
	rg.POST("/articles/:id/preview", allow(service.ActArticles), h.preview)
}

type massTargetRequest struct {
	All        bool     `json:"all"`
	TagID      *uint64  `json:"tag_id"`
	PatientIDs []uint64 `json:"patient_ids"`
}

type massRequest struct {
	ArticleID *uint64           `json:"article_id"`
	Text      string            `json:"text"`
	Target    massTargetRequest `json:"target" binding:"required"`
}

// MassSendDTO is a mass send and how far it is.
type MassSendDTO struct {
	ID          uint64         `json:"id"`
	Status      string         `json:"status"`
	ArticleID   *uint64        `json:"article_id"`
	Text        string         `json:"text,omitempty"`
	Target      string         `json:"target"`
	TagID       *uint64        `json:"tag_id,omitempty"`
	Total       int            `json:"total"`
	Sent        int            `json:"sent"`
	Filtered    int            `json:"filtered"`
	Errors      int            `json:"errors"`
	Skipped     map[string]int `json:"skipped"`
	Batches     int            `json:"batches"`
	BatchesDone int            `json:"batches_done"`
	Error       string         `json:"error,omitempty"`
	CreatedAt   string         `json:"created_at"`
	FinishedAt  string         `json:"finished_at,omitempty"`
}

func massSendDTO(m *model.MassSend) MassSendDTO {
	out := MassSendDTO{ID: m.ID, Status: m.Status, ArticleID: m.ArticleID, Text: m.Text, Target: m.TargetKind, TagID: m.TagID,
		Total: m.Total, Sent: m.Sent, Filtered: m.Filtered, Errors: m.Errors,
		Skipped: map[string]int{"monthly_limit": m.SkippedMonthly, "not_following": m.SkippedNotFollow},
		Batches: m.Batches, BatchesDone: m.BatchesDone, Error: m.LastError, CreatedAt: model.LocalTime(m.CreatedAt)}
	if m.FinishedAt != nil {
		out.FinishedAt = model.LocalTime(*m.FinishedAt)
	}
	return out
}

func (h massHandlers) create(c *gin.Context) {
	var req massRequest
	if !bindJSON(c, &req) {
		return
	}
	m, err := h.m.Create(c.Request.Context(), principal(c), service.MassInput{ArticleID: req.ArticleID, Text: req.Text,
		Target: service.MassTarget{All: req.Target.All, TagID: req.Target.TagID, PatientIDs: req.Target.PatientIDs}})
	renderOne(c, http.StatusCreated, m, err, massSendDTO)
}

func (h massHandlers) list(c *gin.Context) {
	limit, ok := queryLimit(c)
	if !ok {
		return
	}
	ms, next, err := h.m.List(c.Request.Context(), principal(c), c.Query("cursor"), limit)
	renderPage(c, ms, next, err, massSendDTO)
}

func (h massHandlers) get(c *gin.Context) {
	id, ok := idParam(c)
	if !ok {
		return
	}
	m, err := h.m.Get(c.Request.Context(), principal(c), id)
	renderOne(c, http.StatusOK, m, err, massSendDTO)
}

type previewRequest struct {
	OpenID string `json:"openid"`
	WxName string `json:"wxname"`
}

func (h massHandlers) preview(c *gin.Context) {
	id, ok := idParam(c)
	if !ok {
		return
	}
	var req previewRequest
	if !bindJSON(c, &req) {
		return
	}
	if err := h.a.Preview(c.Request.Context(), principal(c), id, req.OpenID, req.WxName); err != nil {
		fail(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}
