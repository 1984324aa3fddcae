package handler

import (
	"encoding/csv"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/gin-gonic/gin"

	"careloop/model"
	"careloop/service"
)

// segmentHandlers serve segments and the computed tags.
type segmentHandlers struct {
	s        *service.Segments
	computed *service.ComputedTags
	patients adminPatients
}

func (h segmentHandlers) register(rg *gin.RouterGroup) {
	may := allow(service.ActSegments)
	rg.GET("/segments", may, h.list)
	rg.POST("/segments", may, h.create)
	rg.GET("/segments/fields", may, h.fields)
	rg.POST("/segments/preview", may, h.preview)
	rg.GET("/segments/:id", may, h.get)
	rg.PUT("/segments/:id", may, h.update)
	rg.DELETE("/segments/:id", may, h.remove)
	rg.GET("/segments/:id/patients", may, h.members)
	rg.GET("/segments/:id/export", may, h.export)
	rg.PUT("/segments/:id/mirror", allow(service.ActOAManage), h.mirror)
	rg.GET("/tags/computed", allow(service.ActTagsRead), h.computedList)
	rg.POST("/tags/computed/refresh", allow(service.ActTagsManage), h.computedRefresh)
}

// SegmentDTO is a saved segment.
type SegmentDTO struct {
	ID         uint64                    `json:"id"`
	Name       string                    `json:"name"`
	Purpose    string                    `json:"purpose"`
	Conditions service.SegmentConditions `json:"conditions"`
	// Health: the segment uses health data (care segments only).
	Health bool `json:"health"`
	// MirrorTagID is the computed tag mirrored at WeChat (null: not mirrored).
	MirrorTagID *uint64 `json:"mirror_tag_id"`
	// Count is the live count (on reading one segment).
	Count     *int64 `json:"count,omitempty"`
	StaffID   uint64 `json:"staff_id"`
	CreatedAt string `json:"created_at"`
	UpdatedAt string `json:"updated_at"`
}

func segmentDTO(s *service.Segment) SegmentDTO {
	return SegmentDTO{ID: s.ID, Name: s.Name, Purpose: s.Purpose, Conditions: s.Rule, Health: s.Health, MirrorTagID: s.TagID,
		StaffID: s.StaffID, CreatedAt: model.LocalTime(s.CreatedAt), UpdatedAt: model.LocalTime(s.UpdatedAt)}
}

type segmentReq struct {
	Name       string                    `json:"name"`
	Purpose    string                    `json:"purpose"`
	Conditions service.SegmentConditions `json:"conditions"`
}

func (h segmentHandlers) list(c *gin.Context) {
	rows, err := h.s.List(c.Request.Context(), principal(c), c.Query("purpose"))
	renderList(c, rows, err, segmentDTO)
}

func (h segmentHandlers) create(c *gin.Context) {
	var req segmentReq
	if !bindJSON(c, &req) {
		return
	}
	seg, err := h.s.Create(c.Request.Context(), principal(c), service.SegmentInput{Name: req.Name, Purpose: req.Purpose, Conditions: req.Conditions})
	renderOne(c, http.StatusCreated, seg, err, segmentDTO)
}

func (h segmentHandlers) update(c *gin.Context) {
	id, ok := idParam(c)
	if !ok {
		return
	}
	var req segmentReq
	if !bindJSON(c, &req) {
		return
	}
	seg, err := h.s.Update(c.Request.Context(), principal(c), id, service.SegmentInput{Name: req.Name, Conditions: req.Conditions})
	renderOne(c, http.StatusOK, seg, err, segmentDTO)
}

func (h segmentHandlers) get(c *gin.Context) {
	id, ok := idParam(c)
	if !ok {
		return
	}
	ctx, p := c.Request.Context(), principal(c)
	seg, err := h.s.Get(ctx, p, id)
	if err != nil {
		fail(c, err)
		return
	}
	n, err := h.s.Count(ctx, p, id)
	if err != nil {
		fail(c, err)
		return
	}
	out := segmentDTO(seg)
	out.Count = &n
	c.JSON(http.StatusOK, out)
}

func (h segmentHandlers) remove(c *gin.Context) {
	id, ok := idParam(c)
	if !ok {
		return
	}
	if err := h.s.Delete(c.Request.Context(), principal(c), id); err != nil {
		fail(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

func (h segmentHandlers) fields(c *gin.Context) {
	rows, err := h.s.Fields(c.Request.Context(), principal(c))
	renderList(c, rows, err, func(f *service.SegmentField) service.SegmentField { return *f })
}

func (h segmentHandlers) preview(c *gin.Context) {
	var req segmentReq
	if !bindJSON(c, &req) {
		return
	}
	p := principal(c)
	n, sample, err := h.s.Preview(c.Request.Context(), p, req.Purpose, req.Conditions)
	if err != nil {
		fail(c, err)
		return
	}
	items := make([]PatientSummaryDTO, 0, len(sample))
	for i := range sample {
		items = append(items, h.patients.summary(&sample[i], p.Role))
	}
	c.JSON(http.StatusOK, gin.H{"count": n, "sample": items})
}

func (h segmentHandlers) members(c *gin.Context) {
	id, ok := idParam(c)
	if !ok {
		return
	}
	limit, ok := queryLimit(c)
	if !ok {
		return
	}
	p := principal(c)
	rows, next, err := h.s.Patients(c.Request.Context(), p, id, c.Query("cursor"), limit)
	renderPage(c, rows, next, err, func(pt *model.Patient) PatientSummaryDTO { return h.patients.summary(pt, p.Role) })
}

// export streams the members as CSV, masked (name, phone), with their age,
// region and value tier.
func (h segmentHandlers) export(c *gin.Context) {
	id, ok := idParam(c)
	if !ok {
		return
	}
	ctx, p := c.Request.Context(), principal(c)
	seg, err := h.s.Get(ctx, p, id)
	if err != nil {
		fail(c, err)
		return
	}
	c.Header("Content-Type", "text/csv; charset=utf-8")
	c.Header("Content-Disposition", fmt.Sprintf(`attachment; filename="segment-%d.csv"; filename*=UTF-8''%s`, seg.ID, url.PathEscape("分群-"+seg.Name+".csv")))
	c.Status(http.StatusOK)
	_, _ = c.Writer.Write([]byte{0xEF, 0xBB, 0xBF}) // Excel reads UTF-8 with a BOM
	w := csv.NewWriter(c.Writer)
	_ = w.Write([]string{"患者编号", "姓名", "性别", "年龄", "地区", "手机", "价值分层"})
	_, err = h.s.Export(ctx, p, id, func(r service.SegmentExportRow) error {
		return w.Write([]string{strconv.FormatUint(r.ID, 10), r.Name, r.Gender, r.Age, r.Region, r.Phone, r.Tier})
	})
	w.Flush()
	if err != nil {
		_ = c.Error(err)
	}
}

func (h segmentHandlers) mirror(c *gin.Context) {
	id, ok := idParam(c)
	if !ok {
		return
	}
	var req struct {
		On *bool `json:"on"`
	}
	if !bindJSON(c, &req) {
		return
	}
	if req.On == nil {
		fail(c, model.ErrInvalid.WithMessage("缺少 on（是否同步为微信标签）"))
		return
	}
	seg, err := h.s.Mirror(c.Request.Context(), principal(c), id, *req.On, h.computed)
	renderOne(c, http.StatusOK, seg, err, segmentDTO)
}

// ComputedTagDTO is a computed tag: how and when it was computed.
type ComputedTagDTO struct {
	TagID      uint64 `json:"tag_id"`
	Key        string `json:"key"`
	Name       string `json:"name"`
	Kind       string `json:"kind"`
	Rule       string `json:"rule"`
	Members    int    `json:"members"`
	ComputedAt string `json:"computed_at,omitempty"`
}

func (h segmentHandlers) computedList(c *gin.Context) {
	rows, err := h.computed.List(c.Request.Context(), principal(c))
	renderList(c, rows, err, func(t *service.ComputedTag) ComputedTagDTO {
		out := ComputedTagDTO{TagID: t.TagID, Key: t.Key, Name: t.Name, Kind: t.Kind, Rule: t.Rule, Members: t.Members}
		if t.ComputedAt != nil {
			out.ComputedAt = model.LocalTime(*t.ComputedAt)
		}
		return out
	})
}

func (h segmentHandlers) computedRefresh(c *gin.Context) {
	if err := h.computed.RefreshNow(c.Request.Context(), principal(c)); err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusAccepted, gin.H{"status": "queued"})
}
