package handler

import (
	"fmt"
	"net/http"
	"net/url"

	"github.com/gin-gonic/gin"

	"careloop/model"
	"careloop/service"
)

// channelHandlers serve marketing's channels and their QR codes.
type channelHandlers struct {
	c *service.Channels
}

func (h channelHandlers) register(rg *gin.RouterGroup) {
	may := allow(service.ActChannels)
	rg.GET("/channels", may, h.list)
	rg.POST("/channels", may, h.create)
	rg.GET("/channels/:id/qr.png", may, h.qr)
}

type channelRequest struct {
	Name       string `json:"name" binding:"required"`
	Purpose    string `json:"purpose"`
	ExpireDays int    `json:"expire_days"`
}

// MarketingChannelDTO is a marketing channel (渠道) with its figures.
type MarketingChannelDTO struct {
	ID                   uint64 `json:"id"`
	Name                 string `json:"name"`
	Purpose              string `json:"purpose"`
	Scene                string `json:"scene"`
	QRURL                string `json:"qr_url"`
	Temporary            bool   `json:"temporary"`
	ExpiresAt            string `json:"expires_at,omitempty"`
	CreatedAt            string `json:"created_at"`
	Scans                int    `json:"scans"`
	NewFollowers         int    `json:"new_followers"`
	Patients             int    `json:"patients"`
	FirstTouchBookings   int    `json:"first_touch_bookings"`
	FirstTouchRevenueFen int64  `json:"first_touch_revenue_fen"`
	AnyTouchBookings     int    `json:"any_touch_bookings"`
	AnyTouchRevenueFen   int64  `json:"any_touch_revenue_fen"`
}

func marketingChannelDTO(st *service.ChannelStats) MarketingChannelDTO {
	ch := st.Channel
	out := MarketingChannelDTO{ID: ch.ID, Name: ch.Name, Purpose: ch.Purpose, Scene: ch.Scene, QRURL: fmt.Sprintf("/api/admin/channels/%d/qr.png", ch.ID),
		Temporary: ch.Temporary, CreatedAt: model.LocalTime(ch.CreatedAt), Scans: st.Scans, NewFollowers: st.NewFollowers, Patients: st.Patients,
		FirstTouchBookings: st.FirstTouchBookings, FirstTouchRevenueFen: st.FirstTouchRevenueFen,
		AnyTouchBookings: st.AnyTouchBookings, AnyTouchRevenueFen: st.AnyTouchRevenueFen}
	if ch.ExpiresAt != nil {
		out.ExpiresAt = model.LocalTime(*ch.ExpiresAt)
	}
	return out
}

func (h channelHandlers) create(c *gin.Context) {
	var req channelRequest
	if !bindJSON(c, &req) {
		return
	}
	ch, err := h.c.Create(c.Request.Context(), principal(c), service.ChannelInput{Name: req.Name, Purpose: req.Purpose, ExpireDays: req.ExpireDays})
	renderOne(c, http.StatusCreated, ch, err, func(ch *model.Channel) MarketingChannelDTO {
		return marketingChannelDTO(&service.ChannelStats{Channel: *ch})
	})
}

func (h channelHandlers) list(c *gin.Context) {
	sts, err := h.c.List(c.Request.Context(), principal(c))
	renderList(c, sts, err, marketingChannelDTO)
}

func (h channelHandlers) qr(c *gin.Context) {
	id, ok := idParam(c)
	if !ok {
		return
	}
	png, ch, err := h.c.QRImage(c.Request.Context(), principal(c), id, 512)
	if err != nil {
		fail(c, err)
		return
	}
	if c.Query("download") != "" {
		c.Header("Content-Disposition", fmt.Sprintf(`attachment; filename="channel-%d.png"; filename*=UTF-8''%s`, ch.ID, url.PathEscape(ch.Name+"-二维码.png")))
	}
	c.Data(http.StatusOK, "image/png", png)
}
