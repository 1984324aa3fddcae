package handler

import (
	"net/http"

	"github.com/gin-gonic/gin"

	"careloop/model"
	"careloop/service"
)

// pointsHandlers serves membership and points.
type pointsHandlers struct {
	p *service.Points
}

func (h pointsHandlers) registerMP(rg *gin.RouterGroup) {
	rg.GET("/points", h.summary)
	rg.GET("/points/ledger", h.myLedger)
	rg.GET("/levels", h.levels)
	rg.GET("/rewards", h.rewards)
	rg.POST("/rewards/:id/redeem", h.redeem)
	rg.GET("/coupons", h.coupons)
}

func (h pointsHandlers) registerAdmin(rg *gin.RouterGroup) {
	mkt := allow(service.ActPointsManage)
	rg.GET("/levels", mkt, h.levels)
	rg.PUT("/levels", mkt, h.saveLevels)
	rg.GET("/rewards", mkt, h.allRewards)
	rg.POST("/rewards", mkt, h.saveReward)
	rg.PUT("/rewards/:id", mkt, h.saveReward)
	rg.POST("/patients/:id/points/adjust", mkt, h.adjust)
	rg.GET("/patients/:id/points/ledger", allow(service.ActPointsRead), h.patientLedger)
}

// LevelDTO is a membership level with its benefits.
type LevelDTO struct {
	ID                uint64 `json:"id"`
	Name              string `json:"name"`
	Growth            int64  `json:"growth"`
	DiscountPct       int    `json:"discount_pct"`
	FreeConsults      int    `json:"free_consults_per_month"`
	BookingWindowDays int    `json:"booking_window_days"`
}

func levelDTO(l *model.Level) *LevelDTO {
	if l == nil {
		return nil
	}
	return &LevelDTO{ID: l.ID, Name: l.Name, Growth: l.Growth, DiscountPct: l.DiscountPct, FreeConsults: l.FreeConsults, BookingWindowDays: l.BookingWindowDays}
}

func (h pointsHandlers) summary(c *gin.Context) { h.summaryOf(c, principal(c).ID) }

// summaryOf answers a patient's balance, growth and level.
func (h pointsHandlers) summaryOf(c *gin.Context, patientID uint64) {
	s, err := h.p.Summary(c.Request.Context(), patientID)
	if err != nil {
		fail(c, err)
		return
	}
	out := gin.H{"balance": s.Balance, "growth": s.Growth, "level": levelDTO(s.Level), "next_level": levelDTO(s.Next), "expiring_points": s.ExpiringPoints}
	if s.ExpiringAt != nil {
		out["expiring_at"] = model.LocalTime(*s.ExpiringAt)
	}
	c.JSON(http.StatusOK, out)
}

func (h pointsHandlers) ledger(c *gin.Context, patientID uint64) {
	limit, ok := queryLimit(c)
	if !ok {
		return
	}
	rows, next, err := h.p.Ledger(c.Request.Context(), principal(c), patientID, c.Query("cursor"), limit)
	renderPage(c, rows, next, err, func(e *model.PointsEntry) gin.H {
		return gin.H{"id": e.ID, "kind": e.Kind, "amount": e.Amount, "reason": e.Reason, "ref": e.Ref, "at": model.LocalTime(e.CreatedAt)}
	})
}

func (h pointsHandlers) myLedger(c *gin.Context) { h.ledger(c, principal(c).ID) }

func (h pointsHandlers) patientLedger(c *gin.Context) {
	id, ok := idParam(c)
	if !ok {
		return
	}
	h.ledger(c, id)
}

func (h pointsHandlers) levels(c *gin.Context) {
	ls, err := h.p.Levels(c.Request.Context())
	if err != nil {
		fail(c, err)
		return
	}
	items := make([]*LevelDTO, 0, len(ls))
	for i := range ls {
		items = append(items, levelDTO(&ls[i]))
	}
	c.JSON(http.StatusOK, gin.H{"items": items})
}

type levelsRequest struct {
	Items []LevelDTO `json:"items" binding:"required"`
}

func (h pointsHandlers) saveLevels(c *gin.Context) {
	var req levelsRequest
	if !bindJSON(c, &req) {
		return
	}
	ls := make([]model.Level, 0, len(req.Items))
	for _, l := range req.Items {
		ls = append(ls, model.Level{Name: l.Name, Growth: l.Growth, DiscountPct: l.DiscountPct, FreeConsults: l.FreeConsults, BookingWindowDays: l.BookingWindowDays})
	}
	if err := h.p.SaveLevels(c.Request.Context(), principal(c), ls); err != nil {
		fail(c, err)
		return
	}
	h.levels(c)
}

// RewardDTO is a reward in the catalogue.
type RewardDTO struct {
	ID             uint64 `json:"id"`
	Name           string `json:"name"`
	Kind           string `json:"kind"`
	CostPoints     int64  `json:"cost_points"`
	Stock          int    `json:"stock"`
	CouponValueFen int64  `json:"coupon_value_fen"`
	Active         bool   `json:"active"`
}

func rewardDTO(r *model.Reward) RewardDTO {
	return RewardDTO{ID: r.ID, Name: r.Name, Kind: r.Kind, CostPoints: r.CostPoints, Stock: r.Stock, CouponValueFen: r.CouponValueFen, Active: r.Active}
}

func (h pointsHandlers) listRewards(c *gin.Context, all bool) {
	rs, err := h.p.Rewards(c.Request.Context(), principal(c), all)
	renderList(c, rs, err, rewardDTO)
}

func (h pointsHandlers) rewards(c *gin.Context)    { h.listRewards(c, false) }
func (h pointsHandlers) allRewards(c *gin.Context) { h.listRewards(c, true) }

type rewardRequest struct {
	Name           string `json:"name" binding:"required"`
	Kind           string `json:"kind" binding:"required"`
	CostPoints     int64  `json:"cost_points"`
	Stock          int    `json:"stock"`
	CouponValueFen int64  `json:"coupon_value_fen"`
	Active         *bool  `json:"active"`
}

func (h pointsHandlers) saveReward(c *gin.Context) {
	var req rewardRequest
	if !bindJSON(c, &req) {
		return
	}
	r := model.Reward{Name: req.Name, Kind: req.Kind, CostPoints: req.CostPoints, Stock: req.Stock, CouponValueFen: req.CouponValueFen,
		Active: req.Active == nil || *req.Active}
	status := http.StatusCreated
	if c.Param("id") != "" {
		id, ok := idParam(c)
		if !ok {
			return
		}
		r.ID, status = id, http.StatusOK
	}
	out, err := h.p.SaveReward(c.Request.Context(), principal(c), r)
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(status, rewardDTO(out))
}

func (h pointsHandlers) redeem(c *gin.Context) {
	id, ok := idParam(c)
	if !ok {
		return
	}
	res, err := h.p.Redeem(c.Request.Context(), principal(c), id, c.GetHeader("Idempotency-Key"))
	if err != nil {
		fail(c, err)
		return
	}
	out := gin.H{"reward": rewardDTO(&res.Reward), "balance": res.Balance}
	if res.Coupon != nil {
		out["coupon"] = couponDTO(res.Coupon)
	}
	if res.Replayed {
		c.Header("Idempotent-Replayed", "true")
	}
	c.JSON(http.StatusOK, out)
}

func couponDTO(cp *model.Coupon) gin.H {
	return gin.H{"id": cp.ID, "code": cp.Code, "value_fen": cp.ValueFen, "status": cp.Status, "booking_id": cp.BookingID, "expires_at": model.LocalTime(cp.ExpiresAt)}
}

func (h pointsHandlers) coupons(c *gin.Context) {
	cs, err := h.p.Coupons(c.Request.Context(), principal(c).ID)
	renderList(c, cs, err, couponDTO)
}

type adjustRequest struct {
	Amount int64  `json:"amount" binding:"required"`
	Reason string `json:"reason"`
}

func (h pointsHandlers) adjust(c *gin.Context) {
	id, req, ok := idAndJSON[adjustRequest](c)
	if !ok {
		return
	}
	if err := h.p.Adjust(c.Request.Context(), principal(c), id, req.Amount, req.Reason); err != nil {
		fail(c, err)
		return
	}
	h.summaryOf(c, id)
}
