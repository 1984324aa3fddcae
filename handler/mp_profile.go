package handler

import (
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"careloop/model"
	"careloop/service"
)

// mpProfile serves the patient's own record: profile, phone, health
// archive, consents, family members, export and erasure.
type mpProfile struct {
	profile *service.Profile
	phones  *service.Phones
	family  *service.Family
	data    *service.PatientData
}

// Register mounts the routes on the authenticated patient group.
func (h mpProfile) Register(rg *gin.RouterGroup) {
	rg.GET("/me", h.me)
	rg.PUT("/me", h.updateMe)
	rg.POST("/phone", h.bindPhone)
	rg.GET("/me/health", h.health)
	rg.PUT("/me/health", h.updateHealth)
	rg.GET("/me/consents", h.consents)
	rg.POST("/me/consents", h.setConsent)
	rg.GET("/me/export", h.export)
	rg.POST("/me/erase", h.erase)
	rg.GET("/family", h.listFamily)
	rg.POST("/family", h.createFamily)
	rg.GET("/family/:id", h.getFamily)
	rg.PUT("/family/:id", h.updateFamily)
	rg.DELETE("/family/:id", h.deleteFamily)
}

// MeDTO is the patient's own profile, with their own phone masked.
type MeDTO struct {
	PatientDTO
	Phone string `json:"phone"`
}

func (h mpProfile) meDTO(p *model.Patient) MeDTO {
	return MeDTO{PatientDTO: patientDTO(p), Phone: service.MaskPhone(h.profile.Phone(p))}
}

func (h mpProfile) me(c *gin.Context) {
	p, err := h.profile.Me(c.Request.Context(), principal(c))
	renderOne(c, http.StatusOK, p, err, h.meDTO)
}

type updateMeRequest struct {
	Name      *string `json:"name"`
	Gender    *string `json:"gender"`
	BirthDate *string `json:"birth_date"`
	// IDCard is the 18-digit ID card ("" removes it).
	IDCard *string `json:"id_card"`
	// RegionCode is a six-digit GB/T 2260 code (the ID card sets it too).
	RegionCode *string `json:"region_code"`
	Source     *string `json:"source"`
}

func (h mpProfile) updateMe(c *gin.Context) {
	var req updateMeRequest
	if !bindJSON(c, &req) {
		return
	}
	p, err := h.profile.UpdateMe(c.Request.Context(), principal(c), service.ProfileUpdate{
		Name: req.Name, Gender: req.Gender, BirthDate: req.BirthDate, IDCard: req.IDCard, RegionCode: req.RegionCode, Source: req.Source,
	})
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, h.meDTO(p))
}

type codeRequest struct {
	Code string `json:"code" binding:"required"`
}

func (h mpProfile) bindPhone(c *gin.Context) {
	var req codeRequest
	if !bindJSON(c, &req) {
		return
	}
	p, err := h.phones.Bind(c.Request.Context(), principal(c), req.Code)
	renderOne(c, http.StatusOK, p, err, h.meDTO)
}

// HealthDTO is the health archive.
type HealthDTO struct {
	service.HealthData
	UpdatedAt string `json:"updated_at,omitempty"`
}

func healthDTO(d service.HealthData, at time.Time) HealthDTO {
	out := HealthDTO{HealthData: d}
	if !at.IsZero() {
		out.UpdatedAt = model.LocalTime(at)
	}
	return out
}

func (h mpProfile) health(c *gin.Context) {
	d, at, err := h.profile.Health(c.Request.Context(), principal(c))
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, healthDTO(d, at))
}

type healthRequest struct {
	Allergies     []string `json:"allergies"`
	Medications   []string `json:"medications"`
	PastHistory   []string `json:"past_history"`
	FamilyHistory []string `json:"family_history"`
	Notes         string   `json:"notes"`
}

func (h mpProfile) updateHealth(c *gin.Context) {
	var req healthRequest
	if !bindJSON(c, &req) {
		return
	}
	d, err := h.profile.UpdateHealth(c.Request.Context(), principal(c), service.HealthData{
		Allergies: req.Allergies, Medications: req.Medications, PastHistory: req.PastHistory,
		FamilyHistory: req.FamilyHistory, Notes: req.Notes,
	})
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, healthDTO(d, time.Now()))
}

// ConsentDTO is the current decision on one kind of processing.
type ConsentDTO struct {
	Kind    string `json:"kind"`
	Version string `json:"version"`
	Granted bool   `json:"granted"`
	At      string `json:"at,omitempty"`
}

func consentDTOs(cs []service.ConsentState) []ConsentDTO {
	out := make([]ConsentDTO, 0, len(cs))
	for _, c := range cs {
		d := ConsentDTO{Kind: c.Kind, Version: c.Version, Granted: c.Granted}
		if !c.At.IsZero() {
			d.At = model.LocalTime(c.At)
		}
		out = append(out, d)
	}
	return out
}

func (h mpProfile) consents(c *gin.Context) {
	cs, err := h.profile.Consents(c.Request.Context(), principal(c).ID)
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"items": consentDTOs(cs)})
}

type consentRequest struct {
	Kind    string `json:"kind" binding:"required"`
	Version string `json:"version" binding:"required"`
	Granted *bool  `json:"granted" binding:"required"`
}

func (h mpProfile) setConsent(c *gin.Context) {
	var req consentRequest
	if !bindJSON(c, &req) {
		return
	}
	p := principal(c)
	if err := h.profile.SetConsent(c.Request.Context(), p, req.Kind, req.Version, *req.Granted); err != nil {
		fail(c, err)
		return
	}
	cs, err := h.profile.Consents(c.Request.Context(), p.ID)
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"items": consentDTOs(cs)})
}

func (h mpProfile) export(c *gin.Context) {
	out, err := h.data.Export(c.Request.Context(), principal(c))
	if err != nil {
		fail(c, err)
		return
	}
	c.Header("Content-Disposition", `attachment; filename="careloop-my-data.json"`)
	c.JSON(http.StatusOK, out)
}

type eraseRequest struct {
	Confirm bool `json:"confirm"`
}

func (h mpProfile) erase(c *gin.Context) {
	var req eraseRequest
	if !bindJSON(c, &req) {
		return
	}
	if !req.Confirm {
		fail(c, model.NewError(model.KindRule, "confirm_required", "注销不可恢复，请确认后再提交"))
		return
	}
	noContent(c, h.data.Erase(c.Request.Context(), principal(c)))
}

// FamilyDTO is a relative as the patient sees them.
type FamilyDTO struct {
	ID        uint64 `json:"id"`
	Name      string `json:"name"`
	Relation  string `json:"relation"`
	Gender    string `json:"gender"`
	BirthDate string `json:"birth_date,omitempty"`
	Phone     string `json:"phone,omitempty"`
	// IDCard is masked (1101**********1234).
	IDCard string `json:"id_card"`
}

func (h mpProfile) familyDTO(m *model.FamilyMember) FamilyDTO {
	d := FamilyDTO{ID: m.ID, Name: m.Name, Relation: m.Relation, Gender: m.Gender, Phone: h.family.Phone(m), IDCard: m.IDCardMask}
	if m.BirthDate != nil {
		d.BirthDate = model.DateString(*m.BirthDate)
	}
	return d
}

type familyRequest struct {
	Name      string `json:"name" binding:"required"`
	Relation  string `json:"relation" binding:"required"`
	Gender    string `json:"gender"`
	BirthDate string `json:"birth_date"`
	Phone     string `json:"phone"`
	IDCard    string `json:"id_card"`
}

func (r familyRequest) input() service.FamilyInput {
	return service.FamilyInput{Name: r.Name, Relation: r.Relation, Gender: r.Gender, BirthDate: r.BirthDate, Phone: r.Phone, IDCard: r.IDCard}
}

func idParam(c *gin.Context) (uint64, bool) {
	id, err := strconv.ParseUint(c.Param("id"), 10, 64)
	if err != nil || id == 0 {
		fail(c, model.ErrNotFound)
		return 0, false
	}
	return id, true
}

func (h mpProfile) listFamily(c *gin.Context) {
	ms, err := h.family.List(c.Request.Context(), principal(c))
	renderList(c, ms, err, h.familyDTO)
}

func (h mpProfile) createFamily(c *gin.Context) {
	var req familyRequest
	if !bindJSON(c, &req) {
		return
	}
	m, err := h.family.Create(c.Request.Context(), principal(c), req.input())
	renderOne(c, http.StatusCreated, m, err, h.familyDTO)
}

func (h mpProfile) getFamily(c *gin.Context) {
	id, ok := idParam(c)
	if !ok {
		return
	}
	m, err := h.family.Get(c.Request.Context(), principal(c), id)
	renderOne(c, http.StatusOK, m, err, h.familyDTO)
}

func (h mpProfile) updateFamily(c *gin.Context) {
	id, req, ok := idAndJSON[familyRequest](c)
	if !ok {
		return
	}
	m, err := h.family.Update(c.Request.Context(), principal(c), id, req.input())
	renderOne(c, http.StatusOK, m, err, h.familyDTO)
}

func (h mpProfile) deleteFamily(c *gin.Context) {
	id, ok := idParam(c)
	if !ok {
		return
	}
	noContent(c, h.family.Delete(c.Request.Context(), principal(c), id))
}
