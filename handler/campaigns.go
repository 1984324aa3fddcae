package handler

import (
	"context"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"careloop/model"
	"careloop/service"
)

// campaignHandlers serve campaigns.
type campaignHandlers struct {
	c *service.Campaigns
}

func (h campaignHandlers) registerMP(rg *gin.RouterGroup) {
	rg.POST("/campaigns/:id/opened", h.opened)
}

// opened: the mini-program page a campaign's message opened says so.
func (h campaignHandlers) opened(c *gin.Context) {
	id, ok := idParam(c)
	if !ok {
		return
	}
	if err := h.c.Opened(c.Request.Context(), principal(c), id); err != nil {
		fail(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

func (h campaignHandlers) register(rg *gin.RouterGroup) {
	may := allow(service.ActCampaigns)
	rg.GET("/campaigns", may, h.list)
	rg.POST("/campaigns", may, h.create)
	rg.GET("/campaigns/fatigue", may, h.fatigue)
	rg.GET("/campaigns/templates", may, h.templates)
	rg.PUT("/campaigns/fatigue", may, h.setFatigue)
	rg.GET("/campaigns/:id", may, h.get)
	rg.POST("/campaigns/:id/start", may, h.step(h.c.Start))
	rg.POST("/campaigns/:id/pause", may, h.step(h.c.Pause))
	rg.POST("/campaigns/:id/resume", may, h.step(h.c.Resume))
	rg.POST("/campaigns/:id/cancel", may, h.step(h.c.Cancel))
}

// CampaignDTO is a campaign; Counts only on reading one.
type CampaignDTO struct {
	ID             uint64                    `json:"id"`
	Name           string                    `json:"name"`
	SegmentID      uint64                    `json:"segment_id"`
	Channel        string                    `json:"channel"`
	TemplateID     string                    `json:"template_id,omitempty"`
	Page           string                    `json:"page,omitempty"`
	Variants       []service.CampaignVariant `json:"variants"`
	CouponRewardID *uint64                   `json:"coupon_reward_id"`
	Goal           service.CampaignGoal      `json:"goal"`
	StartAt        string                    `json:"start_at"`
	Status         string                    `json:"status"`
	Prepared       int                       `json:"prepared"`
	Error          string                    `json:"error,omitempty"`
	Counts         *service.CampaignCounts   `json:"counts,omitempty"`
	CreatedAt      string                    `json:"created_at"`
	StartedAt      string                    `json:"started_at,omitempty"`
	FinishedAt     string                    `json:"finished_at,omitempty"`
}

func campaignDTO(c *model.Campaign) CampaignDTO {
	out := CampaignDTO{ID: c.ID, Name: c.Name, SegmentID: c.SegmentID, Channel: c.Channel, TemplateID: c.TemplateID, Page: c.Page,
		Variants: service.Variants(c), CouponRewardID: c.CouponRewardID,
		Goal:    service.CampaignGoal{Kind: c.GoalKind, PackageID: c.GoalPackageID, Days: c.GoalDays},
		StartAt: model.LocalTime(c.StartAt), Status: c.Status, Prepared: c.Prepared, Error: c.LastError, CreatedAt: model.LocalTime(c.CreatedAt)}
	if c.StartedAt != nil {
		out.StartedAt = model.LocalTime(*c.StartedAt)
	}
	if c.FinishedAt != nil {
		out.FinishedAt = model.LocalTime(*c.FinishedAt)
	}
	return out
}

type campaignReq struct {
	Name           string                   `json:"name"`
	SegmentID      uint64                   `json:"segment_id"`
	Channel        string                   `json:"channel"`
	TemplateID     string                   `json:"template_id"`
	Data           map[string]string        `json:"data"`
	ArticleID      *uint64                  `json:"article_id"`
	Text           string                   `json:"text"`
	Page           string                   `json:"page"`
	VariantB       *service.CampaignVariant `json:"variant_b"`
	CouponRewardID *uint64                  `json:"coupon_reward_id"`
	Goal           service.CampaignGoal     `json:"goal"`
	StartAt        *string                  `json:"start_at"`
}

func (h campaignHandlers) create(c *gin.Context) {
	var req campaignReq
	if !bindJSON(c, &req) {
		return
	}
	var start *time.Time
	if req.StartAt != nil && *req.StartAt != "" {
		t, err := time.Parse(time.RFC3339, *req.StartAt)
		if err != nil {
			fail(c, model.ErrInvalid.WithMessage("字段 start_at 应为带时区的时间，如 2026-12-08T09:00:00+08:00"))
			return
		}
		start = &t
	}
	out, err := h.c.Create(c.Request.Context(), principal(c), service.CampaignInput{Name: req.Name, SegmentID: req.SegmentID, Channel: req.Channel,
		TemplateID: req.TemplateID, Page: req.Page, Message: service.CampaignVariant{Data: req.Data, ArticleID: req.ArticleID, Text: req.Text},
		VariantB: req.VariantB, CouponRewardID: req.CouponRewardID, Goal: req.Goal, StartAt: start})
	renderOne(c, http.StatusCreated, out, err, campaignDTO)
}

func (h campaignHandlers) list(c *gin.Context) {
	limit, ok := queryLimit(c)
	if !ok {
		return
	}
	rows, next, err := h.c.List(c.Request.Context(), principal(c), c.Query("cursor"), limit)
	renderPage(c, rows, next, err, campaignDTO)
}

func (h campaignHandlers) get(c *gin.Context) {
	id, ok := idParam(c)
	if !ok {
		return
	}
	ctx, p := c.Request.Context(), principal(c)
	camp, err := h.c.Get(ctx, p, id)
	if err != nil {
		fail(c, err)
		return
	}
	counts, err := h.c.Counts(ctx, p, id)
	if err != nil {
		fail(c, err)
		return
	}
	out := campaignDTO(camp)
	out.Counts = counts
	c.JSON(http.StatusOK, out)
}

func (h campaignHandlers) step(fn func(ctx context.Context, by service.Principal, id uint64) (*model.Campaign, error)) gin.HandlerFunc {
	return func(c *gin.Context) {
		id, ok := idParam(c)
		if !ok {
			return
		}
		out, err := fn(c.Request.Context(), principal(c), id)
		renderOne(c, http.StatusOK, out, err, campaignDTO)
	}
}

func (h campaignHandlers) fatigue(c *gin.Context) {
	f, err := h.c.Fatigue(c.Request.Context(), principal(c))
	renderOne(c, http.StatusOK, f, err, func(f service.FatigueCap) service.FatigueCap { return f })
}

func (h campaignHandlers) setFatigue(c *gin.Context) {
	var req service.FatigueCap
	if !bindJSON(c, &req) {
		return
	}
	f, err := h.c.SetFatigue(c.Request.Context(), principal(c), req)
	renderOne(c, http.StatusOK, f, err, func(f service.FatigueCap) service.FatigueCap { return f })
}

func (h campaignHandlers) templates(c *gin.Context) {
	rows, err := h.c.Templates(c.Request.Context(), principal(c))
	renderList(c, rows, err, func(id *string) gin.H { return gin.H{"template_id": *id} })
}
