package app

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"careloop/api"
	"careloop/console"
	"careloop/coord"
	"careloop/handler"
	"careloop/model"
	"careloop/notify"
	"careloop/service"
	"careloop/wxconfig"
	"careloop/wxsandbox"
)

// Sandbox template ids (the sandbox accepts them; config maps reasons to them).
var sandboxTemplates = []wxsandbox.Template{
	{ID: "sbx-tmpl-booking-confirmed"}, {ID: "sbx-tmpl-checkup-reminder"}, {ID: "sbx-tmpl-report-ready"},
	{ID: "sbx-tmpl-survey"}, {ID: "sbx-tmpl-care"}, {ID: "sbx-tmpl-doctor-reply"},
	{ID: "sbx-tmpl-marketing"}, {ID: "sbx-tmpl-marketing-coupon"},
	{ID: "sbx-tmpl-critical", LongTerm: true},
	{ID: "sbx-oa-tmpl-service"},
}

// App is careloop, wired.
type App struct {
	Cfg     Config
	Log     *slog.Logger
	DB      *model.DB
	Store   coord.Store
	WX      *wxconfig.Clients
	Sandbox *wxsandbox.Sandbox // in-process WeChat sandbox; nil otherwise
	Auth    *service.Auth
	Sealer  *service.Sealer
	Outbox  *notify.Outbox
	// Bookings is the booking use case (tests drive it directly).
	Bookings *service.Bookings
	Reports  *service.Reports
	Points   *service.Points
	Surveys  *service.Surveys
	OA       *service.OA
	Chat     *service.Chat
	Live     *service.Live
	// Imports runs HIS imports uploaded in the console (Run does the work).
	Imports    *service.Imports
	Complaints *service.Complaints
	// Articles is self-media; its publisher runs in Run.
	Articles *service.Articles
	// MassSends are mass sends; their worker runs in Run.
	MassSends *service.MassSends
	// WxTags mirror careloop tags as WeChat user tags; Run syncs them.
	WxTags *service.WxTags
	// RFM scores patients into value tiers; Run works on its runs.
	RFM *service.RFM
	// Segments are saved filters over patients; ComputedTags keeps the
	// model and predictive tags (Run it).
	Segments *service.Segments
	// Visits keeps the patients' booking summaries segments count on (Run it).
	Visits       *service.Visits
	ComputedTags *service.ComputedTags
	// Campaigns reach segments with marketing messages (Run it).
	Campaigns *service.Campaigns
	// Dispatcher delivers notifications; Run it (serve and worker do).
	Dispatcher *notify.Dispatcher
	// Scheduler runs the care rules; Run it (serve and worker do).
	Scheduler *service.Scheduler
	// Events carry a use case's facts to the use cases reacting to them.
	Events *service.Events
	// CareRules are the care rules' settings and greetings.
	CareRules *service.CareRules
	Router    *gin.Engine
	// Deps are the use cases the router is built from (tests call them
	// directly).
	Deps handler.Deps
	// Ops serves only health and metrics: what a worker process listens with.
	Ops *gin.Engine
}

// New connects and wires everything cfg describes. In sandbox mode it also
// applies the schema and seeds demo data.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*App, error) {
	a := &App{Cfg: cfg, Log: log}
	ok := false
	defer func() {
		if !ok {
			a.Close()
		}
	}()
	var err error
	a.DB, err = model.Open(ctx, model.OpenOptions{MySQLDSN: cfg.MySQLDSN, SQLitePath: cfg.SQLitePath(), MaxOpenConns: int(cfg.MySQLMaxConns)})
	if err != nil {
		return nil, err
	}
	if cfg.Sandbox() {
		if err := a.DB.Migrate(ctx); err != nil {
			return nil, err
		}
	}
	if cfg.RedisAddr != "" {
		a.Store, err = coord.NewRedis(cfg.RedisAddr, cfg.RedisPrefix)
		if err != nil {
			return nil, err
		}
	} else {
		a.Store = coord.NewMemory()
	}

	var inproc http.Handler
	if cfg.Sandbox() && cfg.WeChatAPIBase == "" {
		a.Sandbox = wxsandbox.New(wxsandbox.Options{
			Apps: []wxsandbox.App{
				{AppID: cfg.MPAppID, Secret: cfg.MPSecret, Kind: wxsandbox.MiniProgram},
				{AppID: cfg.OAAppID, Secret: cfg.OASecret, Kind: wxsandbox.OfficialAccount},
			},
			Templates: sandboxTemplates,
			DevLogins: true,
		})
		inproc = a.Sandbox.Handler()
	}
	hc, err := wxconfig.NewHTTPClient(cfg.WeChatTimeout, cfg.WeChatAPIBase, inproc)
	if err != nil {
		return nil, err
	}
	wxconfig.Install(hc)
	a.WX = wxconfig.New(wxconfig.Config{
		MPAppID: cfg.MPAppID, MPSecret: cfg.MPSecret, OAAppID: cfg.OAAppID, OASecret: cfg.OASecret,
		OAToken: cfg.OAToken, OAAESKey: cfg.OAAESKey, Timeout: cfg.WeChatTimeout,
	}, a.Store, hc, log)

	attacks := prometheus.NewCounter(prometheus.CounterOpts{Name: "careloop_staff_login_attacks_total",
		Help: "Staff accounts reported under attack (repeated login failures from anywhere within the window)."})
	a.Auth = service.NewAuth(a.DB, wxIdentity{a.WX}, a.Store, a.Store, service.AuthConfig{Secret: []byte(cfg.TokenSecret), MPLoginsPerIP: int(cfg.MPLoginsPerIP),
		Log: log, OnAttack: func(string) { attacks.Inc() }}, nil)
	sealer, err := cfg.Sealer()
	if err != nil {
		return nil, err
	}
	model.UseSealer(sealer) // the sealed text columns
	nc := cfg.NotifyConfig()
	a.Dispatcher = notify.New(a.DB, a.Store, a.WX, nc, nil, log)
	a.Outbox = notify.NewOutbox(a.DB, nc, nil, a.Dispatcher.Wake)
	audit := service.NewAudit(a.DB)
	profile := service.NewProfile(a.DB, sealer, nil)
	family := service.NewFamily(a.DB, sealer, nil)
	tags := service.NewTags(a.DB, audit, nil)
	a.Sealer = sealer
	// A completed checkup earns points and invites to the survey: Points and
	// Surveys subscribe to it in their constructors, in that order.
	a.Events = service.NewEvents()
	events := a.Events
	a.CareRules = service.NewCareRules(a.DB, a.Outbox, nil)
	a.Points = service.NewPoints(a.DB, a.Outbox, audit, events, service.PointsConfig{PointsPerYuan: cfg.PointsPerYuan, SurveyPoints: cfg.SurveyPoints}, nil)
	a.Bookings = service.NewBookings(a.DB, a.Outbox, a.Store, a.Store, a.CareRules, a.Points, events, service.BookingConfig{}, nil)
	catalog := service.NewCatalog(a.DB, nil)
	followers := service.NewFollowers(a.DB, a.WX)
	var oaKey []byte // nil: plain mode
	if cfg.OAMode == "safe" {
		if oaKey, err = wxconfig.AESKey(cfg.OAAESKey); err != nil {
			return nil, fmt.Errorf("CARELOOP_OA_AES_KEY: %w", err)
		}
	}
	a.Surveys = service.NewSurveys(a.DB, a.Outbox, a.Points, a.CareRules, events, service.SurveyConfig{}, nil)
	// Files live in MySQL when there is one (any instance serves any file),
	// else on local disk (the embedded mode).
	files := Files(cfg, a.DB, sealer)
	if err := service.BackfillPhoneTails(ctx, a.DB, sealer); err != nil {
		return nil, err
	}
	patientData := service.NewPatientData(a.DB, sealer, files, a.Bookings, log, nil)
	phones := service.NewPhones(a.DB, a.WX, sealer, patientData)
	a.Reports = service.NewReports(a.DB, sealer, files, a.Outbox, a.Bookings, audit, nil)
	a.Live = service.NewLive(a.Store, log)
	a.Chat = service.NewChat(a.DB, a.Outbox, a.Surveys, audit, a.Live, files, a.Store, followers, log, nil)
	var onUserMessage func(openID string)
	if a.Sandbox != nil {
		// The sandbox opens its 48-hour window as WeChat does.
		onUserMessage = func(openID string) { a.Sandbox.OpenWindow(cfg.OAAppID, openID) }
	}
	a.OA = service.NewOA(a.DB, a.Outbox, followers, a.Chat, onUserMessage, log, nil)
	a.Articles = service.NewArticles(a.DB, files, a.WX, audit, log, nil)
	a.Articles.PollAfter = cfg.PublishPoll
	a.OA.OnPublishFinished(a.Articles.PublishFinished)
	a.MassSends = service.NewMassSends(a.DB, a.WX, a.Articles, a.Store, audit, log, nil)
	a.MassSends.PollAfter = cfg.PublishPoll
	a.OA.OnMassFinished(a.MassSends.MassFinished)
	channels := service.NewChannels(a.DB, a.WX, audit, nil)
	a.OA.OnScan(channels.Scanned)
	a.WxTags = service.NewWxTags(a.DB, a.WX, a.Store, log, nil)
	a.RFM = service.NewRFM(a.DB, audit, log, nil)
	a.Visits = service.NewVisits(a.DB, a.Store, log, nil)
	a.Segments = service.NewSegments(a.DB, audit, sealer, a.WxTags, a.Visits, nil)
	a.ComputedTags = service.NewComputedTags(a.DB, a.Segments, a.WxTags, a.Store, log, nil)
	a.Campaigns = service.NewCampaigns(a.DB, a.Segments, a.Outbox, a.MassSends, audit, a.Store, log, nil)
	a.Complaints = service.NewComplaints(a.DB, a.Outbox, a.Surveys, audit, nil)
	a.Imports = service.NewImports(a.DB, files, service.NewImporter(a.DB, sealer, nil), audit, filepath.Join(cfg.DataDir, "tmp"), log, nil)

	if cfg.AdminUser != "" {
		if err := a.Auth.EnsureStaff(ctx, cfg.AdminUser, cfg.AdminPassword, model.RoleAdmin, "管理员"); err != nil {
			return nil, fmt.Errorf("ensure admin: %w", err)
		}
	}
	if cfg.Sandbox() {
		if err := a.seedDemo(ctx, catalog); err != nil {
			return nil, fmt.Errorf("seed demo data: %w", err)
		}
	}

	proxies, err := cfg.Proxies()
	if err != nil {
		return nil, err
	}
	deps := handler.Deps{
		Log:                log,
		Auth:               a.Auth,
		Profile:            profile,
		Phones:             phones,
		Family:             family,
		PatientData:        patientData,
		PatientAdmin:       service.NewPatientAdmin(a.DB, profile, family, tags, audit, nil),
		Tags:               tags,
		Staff:              service.NewStaff(a.DB, audit, nil),
		Audit:              audit,
		Outbox:             a.Outbox,
		Bookings:           a.Bookings,
		Catalog:            catalog,
		FrontDesk:          service.NewFrontDesk(a.Bookings, sealer, audit),
		Reports:            a.Reports,
		Points:             a.Points,
		Surveys:            a.Surveys,
		Complaints:         a.Complaints,
		Tasks:              service.NewTasks(a.DB, nil),
		Notices:            service.NewNotices(a.DB, a.Outbox, a.Dispatcher),
		CareRules:          a.CareRules,
		OA:                 a.OA,
		Chat:               a.Chat,
		Imports:            a.Imports,
		Articles:           a.Articles,
		MassSends:          a.MassSends,
		Channels:           channels,
		WxTags:             a.WxTags,
		RFM:                a.RFM,
		Segments:           a.Segments,
		ComputedTags:       a.ComputedTags,
		Campaigns:          a.Campaigns,
		OAMenus:            a.WX,
		OAConfig:           handler.OAConfig{AppID: cfg.OAAppID, Token: cfg.OAToken, AESKey: oaKey},
		IntegrationSecrets: service.ParseSecrets(cfg.IntegrationSecrets),
		URLKey:             []byte("file-links|" + cfg.TokenSecret),
		MaxBodyBytes:       cfg.MaxBodyBytes,
		TrustedProxies:     proxies,
		Nonces:             a.Store,
		MetricsToken:       cfg.MetricsToken,
		LiveHeartbeat:      cfg.LiveHeartbeat,
		Spec:               api.Spec,
		Console:            console.Files(),
		ConsoleConfig:      handler.ConsoleConfig{Sandbox: cfg.Sandbox()},
		Collectors: append(a.Dispatcher.Collectors(), attacks, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "careloop_live_connections", Help: "Live chat clients (staff streams, patient long polls) this process holds.",
		}, func() float64 { return float64(a.Live.Connections()) })),
		Checks: []handler.Check{
			{Name: "database", Ping: a.DB.Ping},
		},
	}
	if cfg.RedisAddr != "" {
		deps.Checks = append(deps.Checks, handler.Check{Name: "redis", Ping: a.Store.Ping})
	}
	if a.Sandbox != nil {
		// The patient's side of WeChat posts to our own callback, in process.
		deliver := func(q url.Values, body []byte) (int, []byte) {
			req := httptest.NewRequest(http.MethodPost, "/wechat/oa/callback?"+q.Encode(), bytes.NewReader(body))
			rec := httptest.NewRecorder()
			a.Router.ServeHTTP(rec, req)
			return rec.Code, rec.Body.Bytes()
		}
		deps.Sandbox = a.Sandbox.ControlHandler(wxsandbox.ControlOptions{
			OAAppID: cfg.OAAppID, MPAppID: cfg.MPAppID, Token: cfg.OAToken, AESKey: cfg.OAAESKey, Safe: cfg.OAMode == "safe",
			Deliver: deliver,
		})
		// So do the results of publishing and mass sends, a moment later.
		a.Sandbox.SetEventSink(func(msg []byte) {
			cb, err := wxsandbox.BuildCallback(cfg.OAToken, cfg.OAAESKey, cfg.OAAppID, msg, cfg.OAMode == "safe", time.Now())
			if err != nil {
				log.Error("sandbox: build event", "err", err)
				return
			}
			if status, body := deliver(cb.Query, cb.Body); status != http.StatusOK {
				log.Warn("sandbox: event refused by the callback", "status", status, "body", string(body))
			}
		}, cfg.SandboxJobDelay)
		if cfg.AdminUser == "" {
			deps.ConsoleConfig.DemoPassword, deps.ConsoleConfig.DemoAccounts = DemoAdminPassword, DemoAccounts
		}
		// In the sandbox, the patient's tap on "accept" reaches WeChat too.
		deps.OnSubscribeAccept = func(openID, templateID string) { a.Sandbox.GrantSubscribe(cfg.MPAppID, openID, templateID, 1) }
	}
	a.Scheduler = service.NewScheduler(a.CareRules, log, a.Bookings.MarkNoShows, a.Bookings.AnnualRecheck, a.Points.Expire, a.Chat.Escalate, a.Chat.ExpireUploads,
		a.RFM.Nightly,
		func(ctx context.Context, now time.Time) error {
			if now.Minute() != 0 { // hourly is plenty for a month's notice
				return nil
			}
			return a.Points.ExpiryReminders(ctx, now)
		})
	a.Deps = deps
	a.Router = handler.NewRouter(deps)
	a.Ops = handler.NewOpsRouter(deps)
	ok = true
	return a, nil
}

// Files is the file store cfg describes (report PDFs, chat images),
// sealed: in MySQL when there is one (any instance serves any file), else
// on local disk (the embedded mode).
func Files(cfg Config, db *model.DB, sealer *service.Sealer) service.SealedFiles {
	var inner service.FileStore = service.LocalFiles{Dir: filepath.Join(cfg.DataDir, "files")}
	if cfg.MySQLDSN != "" {
		inner = service.DBFiles{DB: db}
	}
	return service.SealedFiles{Inner: inner, Sealer: sealer}
}

// Demo accounts seeded in sandbox mode when no admin is configured, one
// per role, all with DemoAdminPassword (the doctor is on duty for the chat).
const (
	DemoAdminUser     = "admin"
	DemoAdminPassword = "careloop-demo"
	DemoDoctorUser    = "doctor"
	DemoDoctorName    = "王医生"
)

// DemoAccounts are the sandbox's staff, one per role, as the console's
// sign-in page lists them.
var DemoAccounts = []handler.DemoAccount{
	{Username: DemoAdminUser, Name: "系统管理员", Role: model.RoleAdmin},
	{Username: DemoDoctorUser, Name: DemoDoctorName, Role: model.RoleDoctor},
	{Username: "frontdesk", Name: "前台小张", Role: model.RoleFrontDesk},
	{Username: "marketing", Name: "市场小李", Role: model.RoleMarketing},
}

func (a *App) seedDemo(ctx context.Context, catalog *service.Catalog) error {
	if err := seedBooking(ctx, a.DB, catalog); err != nil {
		return err
	}
	if err := seedSurvey(ctx, a.DB, a.Surveys); err != nil {
		return err
	}
	if err := a.seedMenu(ctx); err != nil {
		return err
	}
	if a.Cfg.DemoPatients {
		// Demo patients are a courtesy: an instance that lost a race to seed
		// them (another seeded the same database at once) still starts.
		if err := a.seedToday(ctx, catalog); err != nil {
			a.Log.Warn("sandbox mode: demo patients for today not seeded", "err", err)
		}
	}
	if a.Cfg.AdminUser == "" {
		if err := a.Auth.EnsureStaff(ctx, DemoAdminUser, DemoAdminPassword, model.RoleAdmin, "系统管理员"); err != nil {
			return err
		}
		a.Log.Info("sandbox mode: demo staff admin ready", "username", DemoAdminUser, "password", DemoAdminPassword)
		if err := a.seedChat(ctx); err != nil {
			return err
		}
		a.Log.Info("sandbox mode: demo doctor on duty", "username", DemoDoctorUser, "password", DemoAdminPassword)
		for _, d := range DemoAccounts[2:] {
			if err := a.Auth.EnsureStaff(ctx, d.Username, DemoAdminPassword, d.Role, d.Name); err != nil {
				return err
			}
		}
	}
	return nil
}

// Run runs careloop's background loops until ctx ends and waits for every
// one of them: the live fan-out with its session checks, the worker that
// finishes official-account events and the console's imports always, the dispatcher and the care
// rules when workers is set. Nothing it starts outlives it, so Close may
// close the database once it has returned.
func (a *App) Run(ctx context.Context, workers bool) error {
	beat := a.Cfg.LiveHeartbeat
	if beat <= 0 {
		beat = 25 * time.Second
	}
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return a.Live.Run(ctx, beat, a.Auth.ActiveStaffSessions) })
	g.Go(func() error { return a.OA.RunPending(ctx, time.Second) })
	g.Go(func() error { return a.Bookings.Watch(ctx) })
	g.Go(func() error { return a.Auth.Watch(ctx) })
	// Imports run wherever they are uploaded (a claim keeps each to one
	// instance): the uploader is waiting.
	g.Go(func() error { return a.Imports.Run(ctx) })
	// Publishing is short and the author waits for it: like imports.
	g.Go(func() error { return a.Articles.RunPublisher(ctx) })
	g.Go(func() error { return a.MassSends.Run(ctx) })
	g.Go(func() error { return a.WxTags.Run(ctx) })
	g.Go(func() error { return a.RFM.Run(ctx) })
	g.Go(func() error { return a.ComputedTags.Run(ctx) })
	g.Go(func() error { return a.Visits.Run(ctx) })
	g.Go(func() error { return a.Campaigns.Run(ctx) })
	if workers {
		g.Go(func() error { return a.Dispatcher.Run(ctx) })
		g.Go(func() error { return a.Scheduler.Run(ctx) })
	}
	return g.Wait()
}

// Close releases connections; call it after Run has returned. It first
// waits for what requests left running (official-account events being
// finished).
func (a *App) Close() {
	if a.Sandbox != nil {
		a.Sandbox.WaitJobs() // its events post to our callback
	}
	if a.OA != nil {
		a.OA.Wait()
	}
	if a.Live != nil {
		a.Live.Close()
	}
	if a.Store != nil {
		_ = a.Store.Close()
	}
	if a.DB != nil {
		_ = a.DB.Close()
	}
}

// Serve answers HTTP on ln until ctx ends, then stops accepting, lets
// in-flight requests finish within the grace period, and returns.
func (a *App) Serve(ctx context.Context, ln net.Listener, h http.Handler) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
	}
	if a.Live != nil {
		srv.RegisterOnShutdown(a.Live.Drain) // live streams end so that shutdown need not wait for them
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	a.Log.Info("shutting down: finishing in-flight requests", "grace", a.Cfg.ShutdownGrace)
	sctx, cancel := context.WithTimeout(context.Background(), a.Cfg.ShutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// wxIdentity adapts the WeChat clients to what identity needs.
type wxIdentity struct{ c *wxconfig.Clients }

func (w wxIdentity) Code2Session(ctx context.Context, code string) (string, string, error) {
	s, err := w.c.Code2Session(ctx, code)
	return s.OpenID, s.UnionID, err
}
