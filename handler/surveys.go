package handler

import (
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"careloop/model"
	"careloop/service"
)

// surveyHandlers serves invitations and answers to patients, definitions
// and results to staff.
type surveyHandlers struct {
	s *service.Surveys
}

func (h surveyHandlers) registerMP(rg *gin.RouterGroup) {
	rg.GET("/surveys/invites", h.pending)
	rg.GET("/surveys/invites/:id", h.invite)
	rg.POST("/surveys/invites/:id/answer", h.answer)
}

func (h surveyHandlers) registerAdmin(rg *gin.RouterGroup) {
	mkt := allow(service.ActSurveysManage)
	rg.GET("/surveys", mkt, h.list)
	rg.POST("/surveys", mkt, h.define)
	rg.GET("/surveys/results", mkt, h.results)
}

func inviteDTO(i *model.SurveyInvite) gin.H {
	return gin.H{"id": i.ID, "survey_id": i.SurveyID, "booking_id": i.BookingID, "expires_at": model.LocalTime(i.ExpiresAt), "answered": i.AnsweredAt != nil}
}

func (h surveyHandlers) pending(c *gin.Context) {
	is, err := h.s.Pending(c.Request.Context(), principal(c))
	renderList(c, is, err, inviteDTO)
}

func (h surveyHandlers) invite(c *gin.Context) {
	id, ok := idParam(c)
	if !ok {
		return
	}
	v, err := h.s.Invite(c.Request.Context(), principal(c), id)
	if err != nil {
		fail(c, err)
		return
	}
	out := inviteDTO(&v.Invite)
	out["name"], out["questions"] = v.Survey.Name, v.Questions
	c.JSON(http.StatusOK, out)
}

type answerRequest struct {
	Answers map[string]any `json:"answers" binding:"required"`
}

func (h surveyHandlers) answer(c *gin.Context) {
	id, req, ok := idAndJSON[answerRequest](c)
	if !ok {
		return
	}
	r, err := h.s.Answer(c.Request.Context(), principal(c), id, req.Answers)
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusCreated, gin.H{"id": r.ID, "nps": r.NPS, "csat": r.CSAT})
}

func (h surveyHandlers) list(c *gin.Context) {
	ss, err := h.s.List(c.Request.Context(), principal(c))
	if err != nil {
		fail(c, err)
		return
	}
	items := make([]gin.H, 0, len(ss))
	for i := range ss {
		items = append(items, gin.H{"id": ss[i].ID, "code": ss[i].Code, "version": ss[i].Version, "name": ss[i].Name, "trigger": ss[i].Trigger,
			"active": ss[i].Active, "questions": h.s.Questions(&ss[i])})
	}
	c.JSON(http.StatusOK, gin.H{"items": items, "next_cursor": ""})
}

type defineRequest struct {
	Code      string             `json:"code" binding:"required"`
	Name      string             `json:"name" binding:"required"`
	Trigger   string             `json:"trigger" binding:"required"`
	Questions []service.Question `json:"questions" binding:"required"`
}

func (h surveyHandlers) define(c *gin.Context) {
	var req defineRequest
	if !bindJSON(c, &req) {
		return
	}
	sv, err := h.s.Define(c.Request.Context(), principal(c), req.Code, req.Name, req.Trigger, req.Questions)
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusCreated, gin.H{"id": sv.ID, "code": sv.Code, "version": sv.Version, "active": sv.Active})
}

func (h surveyHandlers) results(c *gin.Context) {
	f := service.ResultFilter{SurveyCode: c.Query("code"), Department: c.Query("department")}
	f.PackageID, _ = strconv.ParseUint(c.Query("package_id"), 10, 64)
	f.DoctorID, _ = strconv.ParseUint(c.Query("doctor_id"), 10, 64)
	if !queryTimes(c, &f.From, &f.To) {
		return
	}
	r, err := h.s.Results(c.Request.Context(), principal(c), f)
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"responses": r.Responses, "nps": r.NPS, "csat": r.CSAT, "promoters": r.Promoters, "passives": r.Passives,
		"detractors": r.Detractors, "comments": r.Comments, "by_package": r.ByPackage, "by_month": r.ByMonth})
}
