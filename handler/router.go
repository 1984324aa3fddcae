// Package handler is careloop's HTTP layer: Gin routes per resource, request
// and response DTOs, authentication and the mapping of errors to answers.
package handler

import (
	"log/slog"
	"net/http"

	"github.com/gin-gonic/gin"

	"careloop/model"
	"careloop/service"
)

// Deps is everything the router needs, wired by main.
type Deps struct {
	Log          *slog.Logger
	Auth         *service.Auth
	Patients     *service.Patients
	Phones       *service.Phones
	Checks       []Check
	MaxBodyBytes int64
	// Spec is the OpenAPI document served at /api/openapi.yaml.
	Spec []byte
	// Sandbox, when set, is the WeChat sandbox's control API, mounted under
	// /sandbox/wechat (sandbox mode only).
	Sandbox http.Handler
}

// NewRouter builds the whole HTTP surface.
func NewRouter(d Deps) *gin.Engine {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.ContextWithFallback = true
	r.HandleMethodNotAllowed = true
	m := newMetrics()
	r.Use(requestID(), recovery(d.Log), m.middleware(), accessLog(d.Log), errorMiddleware(d.Log), bodyLimit(d.MaxBodyBytes))
	r.NoRoute(func(c *gin.Context) { fail(c, model.ErrNotFound.WithMessage("接口不存在")) })
	r.NoMethod(func(c *gin.Context) {
		c.JSON(http.StatusMethodNotAllowed, ErrorBody{Error: ErrorDetail{Code: "method_not_allowed", Message: "不支持该请求方法"}})
	})

	health{checks: d.Checks, log: d.Log}.Register(r)
	r.GET("/metrics", metricsHandler(m))
	docs{spec: d.Spec}.Register(r)

	sess := sessionHandlers{auth: d.Auth}
	prof := profileHandlers{patients: d.Patients, phones: d.Phones}

	mp := r.Group("/api/mp")
	mp.POST("/login", sess.mpLogin)
	mpAuth := mp.Group("", authenticate(d.Auth, model.SubjectPatient))
	mpAuth.POST("/logout", sess.logout)
	mpAuth.GET("/me", prof.me)
	mpAuth.POST("/phone", prof.bindPhone)

	admin := r.Group("/api/admin")
	admin.POST("/login", sess.adminLogin)
	staff := admin.Group("", authenticate(d.Auth, model.SubjectStaff))
	staff.POST("/logout", sess.logout)
	staff.GET("/me", prof.staffMe)

	if d.Sandbox != nil {
		sb := gin.WrapH(http.StripPrefix("/sandbox/wechat", d.Sandbox))
		r.GET("/sandbox/wechat/messages", sb)
		r.POST("/sandbox/wechat/faults", sb)
		r.POST("/sandbox/wechat/subscribe", sb)
		r.POST("/sandbox/wechat/follow", sb)
		r.POST("/sandbox/wechat/reset", sb)
	}
	return r
}

// NewOpsRouter serves only /healthz, /readyz and /metrics, for worker
// processes, so that they can be probed and scraped like the API.
func NewOpsRouter(d Deps) *gin.Engine {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	m := newMetrics()
	r.Use(requestID(), recovery(d.Log), m.middleware(), errorMiddleware(d.Log))
	r.NoRoute(func(c *gin.Context) { fail(c, model.ErrNotFound.WithMessage("接口不存在")) })
	health{checks: d.Checks, log: d.Log}.Register(r)
	r.GET("/metrics", metricsHandler(m))
	return r
}

type profileHandlers struct {
	patients *service.Patients
	phones   *service.Phones
}

type bindPhoneRequest struct {
	Code string `json:"code" binding:"required"`
}

func (h profileHandlers) bindPhone(c *gin.Context) {
	var req bindPhoneRequest
	if !bindJSON(c, &req) {
		return
	}
	p, err := h.phones.Bind(c.Request.Context(), principal(c), req.Code)
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, patientDTO(p))
}

func (h profileHandlers) me(c *gin.Context) {
	p, err := h.patients.Me(c.Request.Context(), principal(c))
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, patientDTO(p))
}

func (h profileHandlers) staffMe(c *gin.Context) {
	st, err := h.patients.Staff(c.Request.Context(), principal(c))
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, staffDTO(st))
}
