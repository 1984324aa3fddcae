package handler

import (
	"encoding/json"
	"net/http"

	"github.com/gin-gonic/gin"

	"careloop/model"
	"careloop/service"
)

// rfmHandlers serve RFM scoring runs and their tiers.
type rfmHandlers struct {
	r *service.RFM
}

func (h rfmHandlers) register(rg *gin.RouterGroup) {
	may := allow(service.ActRFM)
	rg.POST("/rfm/runs", may, h.start)
	rg.GET("/rfm/runs", may, h.list)
	rg.GET("/rfm/runs/:id", may, h.get)
	rg.GET("/rfm/config", may, h.config)
	rg.PUT("/rfm/config", may, h.setConfig)
}

func (h rfmHandlers) config(c *gin.Context) {
	cfg, err := h.r.Config(c.Request.Context(), principal(c))
	renderOne(c, http.StatusOK, cfg, err, func(c service.RFMConfig) service.RFMConfig { return c })
}

func (h rfmHandlers) setConfig(c *gin.Context) {
	var req service.RFMConfig
	if !bindJSON(c, &req) {
		return
	}
	cfg, err := h.r.SetConfig(c.Request.Context(), principal(c), req)
	renderOne(c, http.StatusOK, cfg, err, func(c service.RFMConfig) service.RFMConfig { return c })
}

// RFMRunDTO is a scoring run: its thresholds, tier counts and the
// migration from the run before.
type RFMRunDTO struct {
	ID         uint64                    `json:"id"`
	Status     string                    `json:"status"`
	Patients   int                       `json:"patients"`
	Thresholds json.RawMessage           `json:"thresholds,omitempty"`
	Tiers      map[string]int            `json:"tiers"`
	Migration  map[string]map[string]int `json:"migration"`
	PrevRunID  *uint64                   `json:"prev_run_id"`
	Error      string                    `json:"error,omitempty"`
	CreatedAt  string                    `json:"created_at"`
	AsOf       string                    `json:"as_of,omitempty"`
	FinishedAt string                    `json:"finished_at,omitempty"`
}

func rfmRunDTO(r *model.RFMRun) RFMRunDTO {
	out := RFMRunDTO{ID: r.ID, Status: r.Status, Patients: r.Patients, PrevRunID: r.PrevRunID, Error: r.LastError,
		CreatedAt: model.LocalTime(r.CreatedAt), Tiers: map[string]int{}, Migration: map[string]map[string]int{}}
	if r.Thresholds != "" {
		out.Thresholds = json.RawMessage(r.Thresholds)
	}
	_ = json.Unmarshal([]byte(r.Tiers), &out.Tiers)
	_ = json.Unmarshal([]byte(r.Migration), &out.Migration)
	if r.FinishedAt != nil {
		out.AsOf, out.FinishedAt = model.LocalTime(r.AsOf), model.LocalTime(*r.FinishedAt)
	}
	return out
}

func (h rfmHandlers) start(c *gin.Context) {
	r, err := h.r.Start(c.Request.Context(), principal(c))
	renderOne(c, http.StatusAccepted, r, err, rfmRunDTO)
}

func (h rfmHandlers) list(c *gin.Context) {
	limit, ok := queryLimit(c)
	if !ok {
		return
	}
	rs, next, err := h.r.Runs(c.Request.Context(), principal(c), c.Query("cursor"), limit)
	renderPage(c, rs, next, err, rfmRunDTO)
}

func (h rfmHandlers) get(c *gin.Context) {
	id, ok := idParam(c)
	if !ok {
		return
	}
	r, err := h.r.Get(c.Request.Context(), principal(c), id)
	renderOne(c, http.StatusOK, r, err, rfmRunDTO)
}
