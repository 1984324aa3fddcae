package handler

import (
	"net/http"

	"github.com/gin-gonic/gin"

	"careloop/model"
	"careloop/service"
)

// wxTagHandlers serve the mirroring of careloop tags as WeChat user tags.
type wxTagHandlers struct {
	t *service.WxTags
}

func (h wxTagHandlers) register(rg *gin.RouterGroup) {
	may := allow(service.ActOAManage)
	rg.PUT("/tags/:id/wechat", may, h.mirror)
	rg.GET("/wechat-tags", may, h.list)
	rg.POST("/wechat-tags/sync", may, h.sync)
}

// WeChatTagDTO is a mirrored tag and where its sync is.
type WeChatTagDTO struct {
	TagID     uint64 `json:"tag_id"`
	TagName   string `json:"tag_name"`
	Mirrored  bool   `json:"mirrored"`
	WxTagID   int    `json:"wx_tag_id,omitempty"`
	Members   int    `json:"members"`
	Pending   int    `json:"pending"`
	OverLimit int    `json:"over_limit"`
	SyncedAt  string `json:"synced_at,omitempty"`
	Error     string `json:"error,omitempty"`
}

func weChatTagDTO(m *service.MirroredTag) WeChatTagDTO {
	out := WeChatTagDTO{TagID: m.TagID, TagName: m.TagName, Mirrored: m.WxTagID != 0, WxTagID: m.WxTagID, Members: m.Members,
		Pending: m.Pending, OverLimit: m.OverLimit, Error: m.LastError}
	if m.SyncedAt != nil {
		out.SyncedAt = model.LocalTime(*m.SyncedAt)
	}
	return out
}

type mirrorRequest struct {
	Mirror *bool `json:"mirror" binding:"required"`
}

func (h wxTagHandlers) mirror(c *gin.Context) {
	id, ok := idParam(c)
	if !ok {
		return
	}
	var req mirrorRequest
	if !bindJSON(c, &req) {
		return
	}
	m, err := h.t.Mirror(c.Request.Context(), principal(c), id, *req.Mirror)
	renderOne(c, http.StatusOK, m, err, weChatTagDTO)
}

func (h wxTagHandlers) list(c *gin.Context) {
	ms, err := h.t.List(c.Request.Context(), principal(c))
	renderList(c, ms, err, weChatTagDTO)
}

func (h wxTagHandlers) sync(c *gin.Context) {
	if err := h.t.SyncNow(c.Request.Context(), principal(c)); err != nil {
		fail(c, err)
		return
	}
	c.Status(http.StatusAccepted)
}
