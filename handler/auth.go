package handler

import (
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"careloop/model"
	"careloop/service"
)

// authenticate requires a bearer token of the given subject kind and puts
// the principal in the request context.
func authenticate(auth *service.Auth, kind string) gin.HandlerFunc {
	return func(c *gin.Context) {
		h := c.GetHeader("Authorization")
		tok, ok := strings.CutPrefix(h, "Bearer ")
		if !ok || tok == "" {
			fail(c, model.ErrUnauthorized)
			return
		}
		p, err := auth.Authenticate(c.Request.Context(), strings.TrimSpace(tok))
		if err != nil {
			fail(c, err)
			return
		}
		if p.Kind != kind {
			// A valid token of the other side (a patient on a staff route,
			// or the reverse): known, but not allowed here.
			fail(c, model.ErrForbidden)
			return
		}
		p.IP = c.ClientIP()
		c.Request = c.Request.WithContext(service.WithPrincipal(c.Request.Context(), p))
		c.Next()
	}
}

// allow lets through staff whose role may do a (service.Roles): the
// route answers 403 before it reads the body; the service checks again.
func allow(a service.Action) gin.HandlerFunc {
	return func(c *gin.Context) {
		if p, _ := service.PrincipalFrom(c.Request.Context()); !p.May(a) {
			fail(c, model.ErrForbidden)
			return
		}
		c.Next()
	}
}

func principal(c *gin.Context) service.Principal {
	p, _ := service.PrincipalFrom(c.Request.Context())
	return p
}

// PatientDTO is a patient as the mini-program sees them.
type PatientDTO struct {
	ID         uint64 `json:"id"`
	Name       string `json:"name"`
	Gender     string `json:"gender"`
	BirthDate  string `json:"birth_date,omitempty"`
	Region     string `json:"region"`
	RegionCode string `json:"region_code"`
	// IDCard is masked (1101**********1234); "" when none is on record.
	IDCard     string `json:"id_card"`
	Source     string `json:"source"`
	PhoneBound bool   `json:"phone_bound"`
	CreatedAt  string `json:"created_at"`
}

func patientDTO(p *model.Patient) PatientDTO {
	d := PatientDTO{ID: p.ID, Name: p.Name, Gender: p.Gender, Region: p.Region, RegionCode: p.RegionCode, IDCard: p.IDCardMask, Source: p.Source,
		PhoneBound: p.PhoneHash != nil, CreatedAt: model.LocalTime(p.CreatedAt)}
	if p.BirthDate != nil {
		d.BirthDate = model.DateString(*p.BirthDate)
	}
	return d
}

// StaffDTO is a staff account.
type StaffDTO struct {
	ID       uint64 `json:"id"`
	Username string `json:"username"`
	Name     string `json:"name"`
	Role     string `json:"role"`
}

func staffDTO(s *model.Staff) StaffDTO {
	return StaffDTO{ID: s.ID, Username: s.Username, Name: s.Name, Role: s.Role}
}

// sessionHandlers serves login and logout for patients and staff.
type sessionHandlers struct {
	auth    *service.Auth
	profile *service.Profile
}

type mpLoginRequest struct {
	Code string `json:"code" binding:"required"`
	// Source is the first touch (a QR scene, a campaign, a referral code);
	// it is kept only the first time.
	Source string `json:"source"`
}

type mpLoginResponse struct {
	Token   string     `json:"token"`
	Patient PatientDTO `json:"patient"`
}

func (h sessionHandlers) mpLogin(c *gin.Context) {
	var req mpLoginRequest
	if !bindJSON(c, &req) {
		return
	}
	tok, p, err := h.auth.PatientLogin(c.Request.Context(), req.Code, c.ClientIP())
	if err != nil {
		fail(c, err)
		return
	}
	if req.Source != "" && p.Source == "" {
		pr := service.Principal{Kind: model.SubjectPatient, ID: p.ID}
		if updated, err := h.profile.UpdateMe(c.Request.Context(), pr, service.ProfileUpdate{Source: &req.Source}); err == nil {
			p = updated
		}
	}
	c.JSON(http.StatusOK, mpLoginResponse{Token: tok, Patient: patientDTO(p)})
}

type adminLoginRequest struct {
	Username string `json:"username" binding:"required"`
	Password string `json:"password" binding:"required"`
}

type adminLoginResponse struct {
	Token string   `json:"token"`
	Staff StaffDTO `json:"staff"`
}

func (h sessionHandlers) adminLogin(c *gin.Context) {
	var req adminLoginRequest
	if !bindJSON(c, &req) {
		return
	}
	tok, st, err := h.auth.StaffLogin(c.Request.Context(), req.Username, req.Password, c.ClientIP())
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, adminLoginResponse{Token: tok, Staff: staffDTO(st)})
}

func (h sessionHandlers) logout(c *gin.Context) {
	noContent(c, h.auth.Logout(c.Request.Context(), principal(c)))
}
