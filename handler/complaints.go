package handler

import (
	"encoding/csv"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"careloop/model"
	"careloop/service"
	"careloop/tabular"
)

// complaintHandlers serves complaints to patients and staff, tasks and KPI.
type complaintHandlers struct {
	c *service.Complaints
}

func (h complaintHandlers) registerMP(rg *gin.RouterGroup) {
	rg.POST("/complaints", h.file)
	rg.GET("/complaints", h.mine)
	rg.GET("/complaints/:id", h.getMine)
	rg.POST("/complaints/:id/rate", h.rate)
}

func (h complaintHandlers) registerAdmin(rg *gin.RouterGroup) {
	staff := allow(service.ActComplaintsHandle)
	rg.GET("/complaints", staff, h.list)
	rg.GET("/complaints/:id", staff, h.get)
	rg.POST("/complaints/:id/steps", staff, h.advance)
	rg.GET("/kpi", allow(service.ActKPIRead), h.kpi)
}

func (h complaintHandlers) dto(c *model.Complaint) gin.H {
	out := gin.H{"id": c.ID, "patient_id": c.PatientID, "category": c.Category, "content": c.Content, "status": c.Status,
		"department": c.Department, "assignee_id": c.AssigneeID, "resolution": c.Resolution, "reply": c.Reply, "rating": c.Rating,
		"overdue": h.c.Overdue(c), "created_at": model.LocalTime(c.CreatedAt)}
	if c.StepDueAt != nil {
		out["step_due_at"] = model.LocalTime(*c.StepDueAt)
	}
	return out
}

// mpComplaintDTO is a complaint as the patient sees it: what they wrote,
// where it stands and the hospital's reply, never the staff's internal
// handling (department, assignee, proposed resolution, step notes, staff ids).
func mpComplaintDTO(c *model.Complaint) gin.H {
	out := gin.H{"id": c.ID, "category": c.Category, "content": c.Content, "status": c.Status, "reply": "", "rating": c.Rating,
		"created_at": model.LocalTime(c.CreatedAt), "replied_at": nil}
	if c.Status == model.ComplaintReplied || c.Status == model.ComplaintRated {
		out["reply"] = c.Reply
	}
	if c.ResolvedAt != nil {
		out["replied_at"] = model.LocalTime(*c.ResolvedAt)
	}
	return out
}

type complaintRequest struct {
	Category string `json:"category" binding:"required"`
	Content  string `json:"content" binding:"required"`
}

func (h complaintHandlers) file(c *gin.Context) {
	var req complaintRequest
	if !bindJSON(c, &req) {
		return
	}
	cp, err := h.c.File(c.Request.Context(), principal(c), req.Category, req.Content)
	renderOne(c, http.StatusCreated, cp, err, mpComplaintDTO)
}

func (h complaintHandlers) mine(c *gin.Context) {
	cs, err := h.c.Mine(c.Request.Context(), principal(c))
	renderList(c, cs, err, mpComplaintDTO)
}

// getMine is the patient's view of their complaint: status changes with
// their times, nothing of who handled it or their notes.
func (h complaintHandlers) getMine(c *gin.Context) {
	h.withSteps(c, mpComplaintDTO, func(s model.ComplaintStep) gin.H {
		return gin.H{"status": s.To, "at": model.LocalTime(s.CreatedAt)}
	})
}

// withSteps answers the complaint of the path's id with its steps, each
// side through its own DTOs.
func (h complaintHandlers) withSteps(c *gin.Context, dto func(*model.Complaint) gin.H, step func(model.ComplaintStep) gin.H) {
	id, ok := idParam(c)
	if !ok {
		return
	}
	cp, steps, err := h.c.Get(c.Request.Context(), principal(c), id)
	if err != nil {
		fail(c, err)
		return
	}
	out := dto(cp)
	list := make([]gin.H, 0, len(steps))
	for _, s := range steps {
		list = append(list, step(s))
	}
	out["steps"] = list
	c.JSON(http.StatusOK, out)
}

func (h complaintHandlers) list(c *gin.Context) {
	limit, ok := queryLimit(c)
	if !ok {
		return
	}
	cs, next, err := h.c.List(c.Request.Context(), principal(c), c.Query("status"), c.Query("overdue") == "true", c.Query("cursor"), limit)
	renderPage(c, cs, next, err, h.dto)
}

func (h complaintHandlers) get(c *gin.Context) {
	h.withSteps(c, h.dto, func(s model.ComplaintStep) gin.H {
		return gin.H{"from": s.From, "to": s.To, "by": s.By, "note": s.Note, "at": model.LocalTime(s.CreatedAt)}
	})
}

type stepRequest struct {
	To         string `json:"to" binding:"required"`
	Department string `json:"department"`
	AssigneeID uint64 `json:"assignee_id"`
	Note       string `json:"note"`
	Resolution string `json:"resolution"`
	Reply      string `json:"reply"`
}

func (h complaintHandlers) advance(c *gin.Context) {
	id, req, ok := idAndJSON[stepRequest](c)
	if !ok {
		return
	}
	cp, err := h.c.Advance(c.Request.Context(), principal(c), id, service.StepInput{To: req.To, Department: req.Department,
		AssigneeID: req.AssigneeID, Note: req.Note, Resolution: req.Resolution, Reply: req.Reply})
	renderOne(c, http.StatusOK, cp, err, h.dto)
}

type rateRequest struct {
	Rating int `json:"rating" binding:"required"`
}

func (h complaintHandlers) rate(c *gin.Context) {
	id, req, ok := idAndJSON[rateRequest](c)
	if !ok {
		return
	}
	if err := h.c.Rate(c.Request.Context(), principal(c), id, req.Rating); err != nil {
		fail(c, err)
		return
	}
	h.getMine(c)
}

func (h complaintHandlers) kpi(c *gin.Context) {
	now := time.Now().In(model.Shanghai)
	from := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, model.Shanghai)
	to := from.AddDate(0, 1, 0)
	if !queryTimes(c, &from, &to) {
		return
	}
	rows, err := h.c.KPI(c.Request.Context(), principal(c), from, to, c.Query("format"))
	if err != nil {
		fail(c, err)
		return
	}
	switch c.Query("format") {
	case "csv":
		c.Header("Content-Type", "text/csv; charset=utf-8")
		c.Header("Content-Disposition", `attachment; filename="careloop-kpi.csv"`)
		c.Status(http.StatusOK)
		_, _ = c.Writer.Write([]byte{0xEF, 0xBB, 0xBF}) // Excel reads UTF-8 with a BOM
		w := csv.NewWriter(c.Writer)
		next := kpiTable(rows)
		for row, ok := next(); ok; row, ok = next() {
			cells := make([]string, len(row))
			for i, v := range row {
				switch v := v.(type) {
				case float64:
					cells[i] = strconv.FormatFloat(v, 'f', 2, 64)
				case nil:
				default:
					cells[i] = fmt.Sprint(v)
				}
			}
			_ = w.Write(cells)
		}
		w.Flush()
		return
	case "xlsx":
		c.Header("Content-Type", tabular.XLSXContentType)
		c.Header("Content-Disposition", `attachment; filename="careloop-kpi.xlsx"`)
		c.Status(http.StatusOK)
		if err := tabular.WriteXLSX(c.Writer, "满意度与投诉", kpiTable(rows)); err != nil {
			_ = c.Error(err)
		}
		return
	}
	c.JSON(http.StatusOK, gin.H{"from": model.LocalTime(from), "to": model.LocalTime(to), "items": rows})
}

// kpiTable is the KPI report as a table (header first): counts as
// integers, averages and scores as numbers, none as an empty cell.
func kpiTable(rows []service.KPIRow) func() ([]any, bool) {
	i := -1
	num := func(p *float64) any {
		if p == nil {
			return nil
		}
		return math.Round(*p*100) / 100
	}
	return func() ([]any, bool) {
		i++
		switch {
		case i == 0:
			return []any{"范围", "名称", "投诉数", "已回复", "平均处理时长(小时)", "问卷数", "CSAT", "NPS", "完成回访"}, true
		case i > len(rows):
			return nil, false
		}
		r := rows[i-1]
		scope := map[string]string{"department": "科室", "staff": "员工"}[r.Scope]
		return []any{scope, r.Name, r.Complaints, r.Resolved, num(r.AvgResolutionHours), r.Responses, num(r.CSAT), num(r.NPS), r.FollowUpsDone}, true
	}
}
