package handler

import (
	"bufio"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"careloop/model"
	"careloop/service"
)

// reportHandlers serves report ingestion (signed, machine to machine), the
// patient's reports, and the staff's queue, reads and interpretations.
type reportHandlers struct {
	r       *service.Reports
	secrets map[string]string
	// urlKey signs short-lived PDF links.
	urlKey []byte
}

// maxReportBody allows a report with its PDF (base64).
const maxReportBody = 16 << 20

func (h reportHandlers) registerIntegration(r gin.IRoutes) {
	r.POST("/api/integrations/reports", h.ingest)
	r.GET("/files/reports/:id", h.pdf)
}

func (h reportHandlers) registerMP(rg *gin.RouterGroup) {
	rg.GET("/reports", h.mine)
	rg.GET("/reports/trends", h.trends)
	rg.GET("/reports/:id", h.get)
	rg.GET("/reports/:id/pdf-url", h.pdfURL)
	rg.POST("/reports/:id/interpretation-request", h.requestInterpretation)
}

func (h reportHandlers) registerAdmin(rg *gin.RouterGroup) {
	clinical := allow(service.ActReportsClinical)
	rg.GET("/reports/unmatched", allow(service.ActReportsLink), h.unmatched)
	rg.POST("/reports/:id/link", allow(service.ActReportsLink), h.link)
	rg.GET("/reports/:id", clinical, h.staffGet)
	rg.POST("/reports/:id/interpretation", clinical, h.interpret)
}

func (h reportHandlers) ingest(c *gin.Context) {
	body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, maxReportBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			fail(c, model.ErrTooLarge)
			return
		}
		fail(c, model.ErrInvalid)
		return
	}
	source := c.GetHeader("X-Careloop-Source")
	if err := service.VerifySignature(h.secrets, source, c.GetHeader("X-Careloop-Signature"), body, time.Now()); err != nil {
		fail(c, err)
		return
	}
	p, pdf, err := service.ParseReport(body)
	if err != nil {
		fail(c, err)
		return
	}
	res, err := h.r.Ingest(c.Request.Context(), source, p, pdf)
	if err != nil {
		fail(c, err)
		return
	}
	status := http.StatusOK
	if res.Created {
		status = http.StatusCreated
	}
	c.JSON(status, gin.H{"id": res.Report.ID, "version": res.Report.Version, "matched": res.Matched, "changed": res.Changed})
}

// ReportSummaryDTO is a report in a list.
type ReportSummaryDTO struct {
	ID             uint64  `json:"id"`
	ExamDate       string  `json:"exam_date"`
	Doctor         string  `json:"doctor"`
	FamilyMemberID *uint64 `json:"family_member_id"`
	Version        int     `json:"version"`
	AbnormalCount  int     `json:"abnormal_count"`
	Critical       bool    `json:"critical"`
	Interpreted    bool    `json:"interpreted"`
	UpdatedAt      string  `json:"updated_at"`
}

func reportSummary(r *model.Report) ReportSummaryDTO {
	return ReportSummaryDTO{ID: r.ID, ExamDate: r.ExamDate, Doctor: r.Doctor, FamilyMemberID: r.FamilyMemberID, Version: r.Version,
		AbnormalCount: r.AbnormalCount, Critical: r.Critical, Interpreted: r.InterpretedAt != nil, UpdatedAt: model.LocalTime(r.UpdatedAt)}
}

// ReportDTO is a whole report, abnormal items first.
type ReportDTO struct {
	ReportSummaryDTO
	AbnormalItems   []service.ReportItem    `json:"abnormal_items"`
	Sections        []service.ReportSection `json:"sections"`
	Conclusions     []string                `json:"conclusions"`
	Recommendations []string                `json:"recommendations"`
	Interpretation  string                  `json:"interpretation"`
	HasPDF          bool                    `json:"has_pdf"`
}

func reportDTO(v *service.ReportView) ReportDTO {
	return ReportDTO{ReportSummaryDTO: reportSummary(&v.Report), AbnormalItems: v.Abnormal, Sections: v.Content.Sections,
		Conclusions: nonNil(v.Content.Conclusions), Recommendations: nonNil(v.Content.Recommendations),
		Interpretation: v.Report.Interpretation, HasPDF: v.HasPDF}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func (h reportHandlers) mine(c *gin.Context) {
	rs, err := h.r.Mine(c.Request.Context(), principal(c))
	renderList(c, rs, err, reportSummary)
}

func (h reportHandlers) get(c *gin.Context) {
	id, ok := idParam(c)
	if !ok {
		return
	}
	v, err := h.r.Get(c.Request.Context(), principal(c), id)
	renderOne(c, http.StatusOK, v, err, reportDTO)
}

func (h reportHandlers) trends(c *gin.Context) {
	code := c.Query("item")
	if code == "" {
		fail(c, model.ErrInvalid.WithMessage("需要 item 参数（项目代码，如 WBC）"))
		return
	}
	var fam *uint64
	if f := c.Query("family_member_id"); f != "" {
		id, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			fail(c, model.ErrInvalid)
			return
		}
		fam = &id
	}
	ps, err := h.r.Trends(c.Request.Context(), principal(c), code, fam)
	if err != nil {
		fail(c, err)
		return
	}
	items := make([]gin.H, 0, len(ps))
	for _, p := range ps {
		items = append(items, gin.H{"report_id": p.ReportID, "exam_date": p.ExamDate, "value": p.Item.Value, "unit": p.Item.Unit,
			"reference_range": p.Item.ReferenceRange, "abnormal": p.Item.Abnormal, "name": p.Item.Name})
	}
	c.JSON(http.StatusOK, gin.H{"item": code, "items": items})
}

// pdfURLTTL is how long a PDF link works.
const pdfURLTTL = 5 * time.Minute

func (h reportHandlers) sign(id uint64, version int, exp int64) string {
	m := hmac.New(sha256.New, h.urlKey)
	fmt.Fprintf(m, "report-pdf|%d|%d|%d", id, version, exp)
	return hex.EncodeToString(m.Sum(nil))
}

func (h reportHandlers) pdfURL(c *gin.Context) {
	id, ok := idParam(c)
	if !ok {
		return
	}
	v, err := h.r.Get(c.Request.Context(), principal(c), id)
	if err != nil {
		fail(c, err)
		return
	}
	if !v.HasPDF {
		fail(c, model.ErrNotFound.WithMessage("该报告没有 PDF 文件"))
		return
	}
	exp := time.Now().Add(pdfURLTTL)
	url := fmt.Sprintf("/files/reports/%d?v=%d&exp=%d&sig=%s", id, v.Report.Version, exp.Unix(), h.sign(id, v.Report.Version, exp.Unix()))
	c.JSON(http.StatusOK, gin.H{"url": url, "expires_at": model.LocalTime(exp)})
}

// pdf serves a PDF to whoever holds a valid, unexpired signed link.
func (h reportHandlers) pdf(c *gin.Context) {
	id, ok := idParam(c)
	if !ok {
		return
	}
	version, _ := strconv.Atoi(c.Query("v"))
	exp, _ := strconv.ParseInt(c.Query("exp"), 10, 64)
	want, err := hex.DecodeString(c.Query("sig"))
	got, _ := hex.DecodeString(h.sign(id, version, exp))
	if err != nil || !hmac.Equal(want, got) {
		fail(c, model.NewError(model.KindForbidden, "bad_link", "链接无效"))
		return
	}
	if time.Now().Unix() > exp {
		fail(c, model.NewError(model.KindForbidden, "link_expired", "链接已过期，请重新打开报告"))
		return
	}
	rc, err := h.r.PDF(c.Request.Context(), id, version)
	if err != nil {
		fail(c, err)
		return
	}
	defer rc.Close()
	// Streamed frame by frame as it is unsealed: a large PDF is never held
	// whole. The first frame is opened before answering, so a file that
	// cannot be unsealed is an error, not a truncated 200.
	br := bufio.NewReaderSize(rc, 32<<10)
	if _, err := br.Peek(1); err != nil && !errors.Is(err, io.EOF) {
		fail(c, fmt.Errorf("open report %d pdf: %w", id, err))
		return
	}
	c.Header("Cache-Control", "private, no-store")
	c.DataFromReader(http.StatusOK, -1, "application/pdf", br, nil)
}

type interpretationRequest struct {
	Question string `json:"question"`
}

func (h reportHandlers) requestInterpretation(c *gin.Context) {
	id, ok := idParam(c)
	if !ok {
		return
	}
	var req interpretationRequest
	_ = c.ShouldBindJSON(&req)
	if err := h.r.RequestInterpretation(c.Request.Context(), principal(c), id, req.Question); err != nil {
		fail(c, err)
		return
	}
	c.Status(http.StatusAccepted)
}

func (h reportHandlers) unmatched(c *gin.Context) {
	rs, err := h.r.Unmatched(c.Request.Context(), principal(c))
	if err != nil {
		fail(c, err)
		return
	}
	items := make([]gin.H, 0, len(rs))
	for _, r := range rs {
		items = append(items, gin.H{"id": r.ID, "source": r.Source, "external_id": r.ExternalID, "exam_date": r.ExamDate,
			"match": r.Match, "critical": r.Critical, "received_at": model.LocalTime(r.CreatedAt)})
	}
	c.JSON(http.StatusOK, gin.H{"items": items, "next_cursor": ""})
}

type linkRequest struct {
	PatientID      uint64  `json:"patient_id" binding:"required"`
	FamilyMemberID *uint64 `json:"family_member_id"`
	BookingID      *uint64 `json:"booking_id"`
}

func (h reportHandlers) link(c *gin.Context) {
	id, req, ok := idAndJSON[linkRequest](c)
	if !ok {
		return
	}
	r, err := h.r.Link(c.Request.Context(), principal(c), id, req.PatientID, req.FamilyMemberID, req.BookingID)
	renderOne(c, http.StatusOK, r, err, reportSummary)
}

func (h reportHandlers) staffGet(c *gin.Context) {
	id, ok := idParam(c)
	if !ok {
		return
	}
	v, err := h.r.StaffGet(c.Request.Context(), principal(c), id)
	if err != nil {
		fail(c, err)
		return
	}
	out := gin.H{"report": reportDTO(v), "patient_id": v.Report.PatientID}
	c.JSON(http.StatusOK, out)
}

type interpretRequest struct {
	Text string `json:"text" binding:"required"`
}

func (h reportHandlers) interpret(c *gin.Context) {
	id, req, ok := idAndJSON[interpretRequest](c)
	if !ok {
		return
	}
	r, err := h.r.Interpret(c.Request.Context(), principal(c), id, req.Text)
	renderOne(c, http.StatusOK, r, err, reportSummary)
}
