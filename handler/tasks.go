package handler

import (
	"net/http"

	"github.com/gin-gonic/gin"

	"careloop/model"
	"careloop/service"
)

// taskHandlers serve a role's work list: critical values, follow-up calls.
type taskHandlers struct {
	t *service.Tasks
}

func (h taskHandlers) register(rg *gin.RouterGroup) {
	rg.GET("/tasks", allow(service.ActTasksWork), h.open)
	rg.POST("/tasks/:id/done", allow(service.ActTasksWork), h.done)
}

func (h taskHandlers) open(c *gin.Context) {
	ts, err := h.t.Open(c.Request.Context(), principal(c))
	renderList(c, ts, err, taskDTO)
}

func (h taskHandlers) done(c *gin.Context) {
	id, ok := idParam(c)
	if !ok {
		return
	}
	t, err := h.t.Complete(c.Request.Context(), principal(c), id)
	renderOne(c, http.StatusOK, t, err, taskDTO)
}

func taskDTO(t *model.Task) gin.H {
	out := gin.H{"id": t.ID, "kind": t.Kind, "urgent": t.Urgent, "patient_id": t.PatientID, "report_id": t.ReportID,
		"note": t.Note, "status": t.Status, "created_at": model.LocalTime(t.CreatedAt), "done_at": nil, "done_by": t.AssignedTo}
	if t.DoneAt != nil {
		out["done_at"] = model.LocalTime(*t.DoneAt)
	}
	return out
}
