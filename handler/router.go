// Package handler is careloop's HTTP layer: Gin routes per resource, request
// and response DTOs, authentication and the mapping of errors to answers.
package handler

import (
	"io/fs"
	"log/slog"
	"net/http"
	"reflect"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"

	"careloop/model"
	"careloop/notify"
	"careloop/service"
)

// Deps is everything the router needs, wired by main.
type Deps struct {
	Log          *slog.Logger
	Auth         *service.Auth
	Profile      *service.Profile
	Phones       *service.Phones
	Family       *service.Family
	PatientData  *service.PatientData
	PatientAdmin *service.PatientAdmin
	Tags         *service.Tags
	Staff        *service.Staff
	Audit        *service.Audit
	Outbox       *notify.Outbox
	Bookings     *service.Bookings
	Catalog      *service.Catalog
	FrontDesk    *service.FrontDesk
	Reports      *service.Reports
	Points       *service.Points
	Surveys      *service.Surveys
	Complaints   *service.Complaints
	Tasks        *service.Tasks
	Notices      *service.Notices
	CareRules    *service.CareRules
	OA           *service.OA
	Chat         *service.Chat
	Imports      *service.Imports
	Articles     *service.Articles
	MassSends    *service.MassSends
	Channels     *service.Channels
	WxTags       *service.WxTags
	RFM          *service.RFM
	Segments     *service.Segments
	ComputedTags *service.ComputedTags
	Campaigns    *service.Campaigns
	OAMenus      service.OAMenus
	OAConfig     OAConfig
	// IntegrationSecrets verify signed machine requests (source -> secret).
	IntegrationSecrets map[string]string
	// URLKey signs short-lived file links.
	URLKey []byte
	// OnSubscribeAccept mirrors an accepted subscription into the sandbox.
	OnSubscribeAccept func(openID, templateID string)
	Checks            []Check
	MaxBodyBytes      int64
	// Nonces remember plain-mode callbacks, to refuse replays.
	Nonces NonceStore
	// MetricsToken, when set, is the bearer token /metrics asks for.
	MetricsToken string
	// TrustedProxies are the proxies whose forwarding headers are believed;
	// none by default: the client IP is the connection's peer.
	TrustedProxies []string
	// LiveHeartbeat is how often an idle live stream sends a keep-alive
	// (25 s when zero).
	LiveHeartbeat time.Duration
	// Collectors are extra Prometheus metrics (the dispatcher's).
	Collectors []prometheus.Collector
	// Spec is the OpenAPI document served at /api/openapi.yaml.
	Spec []byte
	// Sandbox, when set, is the WeChat sandbox's control API, mounted under
	// /sandbox/wechat (sandbox mode only).
	Sandbox http.Handler
	// Console is the staff console's built files, served at /.
	Console fs.FS
	// ConsoleConfig is what its sign-in page shows.
	ConsoleConfig ConsoleConfig
}

// optionalDeps may be nil: sandbox-only hooks and extras.
var optionalDeps = map[string]bool{"Sandbox": true, "OnSubscribeAccept": true, "Collectors": true, "Spec": true, "Checks": true,
	"IntegrationSecrets": true, "URLKey": true, "TrustedProxies": true, "Console": true}

// securityHeaders are sent with every answer; API answers, which carry
// personal data, are never stored by a cache or browser.
func securityHeaders() gin.HandlerFunc {
	return func(c *gin.Context) {
		h := c.Writer.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Content-Security-Policy", "frame-ancestors 'none'")
		h.Set("X-Frame-Options", "DENY")
		if p := c.Request.URL.Path; strings.HasPrefix(p, "/api/mp/") || strings.HasPrefix(p, "/api/admin/") || strings.HasPrefix(p, "/api/files/") {
			h.Set("Cache-Control", "no-store")
		}
		c.Next()
	}
}

// mustBeWired panics at start-up, naming the field, when main forgot to
// wire a service: better than a nil dereference on the first request.
func mustBeWired(d Deps) {
	v := reflect.ValueOf(d)
	for i := 0; i < v.NumField(); i++ {
		f := v.Type().Field(i)
		switch f.Type.Kind() {
		case reflect.Pointer, reflect.Interface, reflect.Func, reflect.Map, reflect.Slice:
			if v.Field(i).IsNil() && !optionalDeps[f.Name] {
				panic("handler.NewRouter: Deps." + f.Name + " is not wired")
			}
		}
	}
}

// NewRouter builds the whole HTTP surface.
func NewRouter(d Deps) *gin.Engine {
	mustBeWired(d)
	if d.LiveHeartbeat <= 0 {
		d.LiveHeartbeat = 25 * time.Second
	}
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.ContextWithFallback = true
	// Forwarding headers only from configured proxies: otherwise anyone
	// could pick their own IP (for the per-IP limits and the audit log).
	if err := r.SetTrustedProxies(d.TrustedProxies); err != nil {
		panic("handler.NewRouter: trusted proxies: " + err.Error()) // validated with the config
	}
	r.HandleMethodNotAllowed = true
	m := newMetrics(d.Collectors...)
	r.Use(requestID(), securityHeaders(), recovery(d.Log), m.middleware(), accessLog(d.Log), errorMiddleware(d.Log))
	// Report ingestion carries PDFs: it sets its own, larger body limit.
	rh := reportHandlers{r: d.Reports, secrets: d.IntegrationSecrets, urlKey: d.URLKey}
	rh.registerIntegration(r)
	wechatHandlers{oa: d.OA, cfg: d.OAConfig, log: d.Log, nonces: d.Nonces}.register(r)
	chh := chatHandlers{chat: d.Chat, patients: d.PatientAdmin, heartbeat: d.LiveHeartbeat}
	// Chat images are larger than other bodies: their own limit.
	r.POST("/api/mp/chat/images", authenticate(d.Auth, model.SubjectPatient), bodyLimit(service.MaxChatImage+64<<10), chh.upload)
	ih := importHandlers{imports: d.Imports}
	ih.registerUpload(r, d.Auth) // a HIS export: its own limit too
	arh := articleHandlers{a: d.Articles}
	arh.registerUpload(r, d.Auth) // images for articles: theirs too
	r.Use(bodyLimit(d.MaxBodyBytes))
	con := &console{files: d.Console}
	con.register(r, d.ConsoleConfig)
	r.NoRoute(func(c *gin.Context) {
		if !con.serve(c) {
			fail(c, model.ErrNotFound.WithMessage("接口不存在"))
		}
	})
	r.NoMethod(func(c *gin.Context) {
		c.JSON(http.StatusMethodNotAllowed, ErrorBody{Error: ErrorDetail{Code: "method_not_allowed", Message: "不支持该请求方法"}})
	})

	health{checks: d.Checks, log: d.Log}.Register(r)
	r.GET("/metrics", metricsHandler(m, d.MetricsToken))
	docs{spec: d.Spec}.Register(r)

	sess := sessionHandlers{auth: d.Auth, profile: d.Profile}

	mp := r.Group("/api/mp")
	mp.POST("/login", sess.mpLogin)
	mpAuth := mp.Group("", authenticate(d.Auth, model.SubjectPatient))
	mpAuth.POST("/logout", sess.logout)
	mpProfile{profile: d.Profile, phones: d.Phones, family: d.Family, data: d.PatientData}.Register(mpAuth)
	nh := notifyHandlers{outbox: d.Outbox, notices: d.Notices, care: d.CareRules, profile: d.Profile, onAccept: d.OnSubscribeAccept}
	nh.registerMP(mpAuth)
	bh := bookingHandlers{b: d.Bookings, catalog: d.Catalog, desk: d.FrontDesk}
	bh.registerMP(mpAuth)
	rh.registerMP(mpAuth)
	ph := pointsHandlers{p: d.Points}
	ph.registerMP(mpAuth)
	sh := surveyHandlers{s: d.Surveys}
	sh.registerMP(mpAuth)
	ch := complaintHandlers{c: d.Complaints}
	ch.registerMP(mpAuth)

	admin := r.Group("/api/admin")
	admin.POST("/login", sess.adminLogin)
	staff := admin.Group("", authenticate(d.Auth, model.SubjectStaff))
	staff.POST("/logout", sess.logout)
	adminStaff{staff: d.Staff, audit: d.Audit}.Register(staff)
	ap := adminPatients{admin: d.PatientAdmin, tags: d.Tags, profile: d.Profile}
	ap.Register(staff)
	adminTags{tags: d.Tags}.Register(staff)
	nh.registerAdmin(staff)
	bh.registerAdmin(staff)
	rh.registerAdmin(staff)
	ph.registerAdmin(staff)
	sh.registerAdmin(staff)
	ch.registerAdmin(staff)
	taskHandlers{t: d.Tasks}.register(staff)
	ih.register(staff)
	oaAdmin{oa: d.OA, menus: d.OAMenus}.register(staff)
	chh.p360 = ap.dto360
	chh.registerMP(mpAuth)
	chh.registerAdmin(staff)
	arh.registerMP(mpAuth)
	arh.registerAdmin(staff)
	massHandlers{m: d.MassSends, a: d.Articles}.register(staff)
	channelHandlers{c: d.Channels}.register(staff)
	wxTagHandlers{t: d.WxTags}.register(staff)
	rfmHandlers{r: d.RFM}.register(staff)
	segmentHandlers{s: d.Segments, computed: d.ComputedTags, patients: ap}.register(staff)
	campaignHandlers{c: d.Campaigns}.register(staff)
	campaignHandlers{c: d.Campaigns}.registerMP(mpAuth)

	if d.Sandbox != nil {
		sb := gin.WrapH(http.StripPrefix("/sandbox/wechat", d.Sandbox))
		r.GET("/sandbox/wechat/messages", sb)
		r.POST("/sandbox/wechat/faults", sb)
		r.POST("/sandbox/wechat/subscribe", sb)
		r.POST("/sandbox/wechat/follow", sb)
		r.POST("/sandbox/wechat/reset", sb)
		r.POST("/sandbox/wechat/oa/user-message", sb)
		r.POST("/sandbox/wechat/oa/user-image", sb)
		r.POST("/sandbox/wechat/oa/event", sb)
		r.POST("/sandbox/wechat/events/withhold", sb)
		r.POST("/sandbox/wechat/oa/scan", sb)
	}
	return r
}

// NewOpsRouter serves only /healthz, /readyz and /metrics, for worker
// processes, so that they can be probed and scraped like the API.
func NewOpsRouter(d Deps) *gin.Engine {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	m := newMetrics(d.Collectors...)
	r.Use(requestID(), recovery(d.Log), m.middleware(), errorMiddleware(d.Log))
	r.NoRoute(func(c *gin.Context) { fail(c, model.ErrNotFound.WithMessage("接口不存在")) })
	health{checks: d.Checks, log: d.Log}.Register(r)
	r.GET("/metrics", metricsHandler(m, d.MetricsToken))
	return r
}
