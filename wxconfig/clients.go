// Package wxconfig holds careloop's WeChat configuration and SDK wiring: the
// mini-program and official-account clients, the access-token handle shared
// across instances, the HTTP client, and one error type for every call.
package wxconfig

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/silenceper/wechat/v2/cache"
	"github.com/silenceper/wechat/v2/miniprogram"
	mpconfig "github.com/silenceper/wechat/v2/miniprogram/config"
	"github.com/silenceper/wechat/v2/officialaccount"
	oaconfig "github.com/silenceper/wechat/v2/officialaccount/config"
	"github.com/sirupsen/logrus"

	"careloop/coord"
)

// Config is the WeChat part of careloop's configuration.
type Config struct {
	MPAppID  string
	MPSecret string
	OAAppID  string
	OASecret string
	OAToken  string
	OAAESKey string
	// Timeout bounds every WeChat call.
	Timeout time.Duration
}

// Clients are the WeChat SDK clients, built once in main.
type Clients struct {
	Config  Config
	MP      *miniprogram.MiniProgram
	OA      *officialaccount.OfficialAccount
	MPToken *TokenSource
	OAToken *TokenSource
	// http is the client careloop's own WeChat calls use (the SDK's is
	// the same, installed with Install).
	http *http.Client
}

// New builds the clients over store (shared token cache and lock) and hc,
// which must already be installed with Install.
func New(cfg Config, store coord.Store, hc *http.Client, log *slog.Logger) *Clients {
	silenceSDKLog()
	sdkCache := sdkCacheAdapter{store}
	mp := miniprogram.NewMiniProgram(&mpconfig.Config{AppID: cfg.MPAppID, AppSecret: cfg.MPSecret, Cache: sdkCache, UseStableAK: true})
	oa := officialaccount.NewOfficialAccount(&oaconfig.Config{
		AppID: cfg.OAAppID, AppSecret: cfg.OASecret, Token: cfg.OAToken, EncodingAESKey: cfg.OAAESKey,
		Cache: sdkCache, UseStableAK: true,
	})
	c := &Clients{
		Config:  cfg,
		MP:      mp,
		OA:      oa,
		MPToken: NewTokenSource(cfg.MPAppID, cfg.MPSecret, store, hc, log),
		OAToken: NewTokenSource(cfg.OAAppID, cfg.OASecret, store, hc, log),
		http:    hc,
	}
	mp.SetAccessTokenContextHandle(c.MPToken)
	oa.SetAccessTokenHandle(c.OAToken)
	return c
}

// silenceSDKLog keeps the SDK from logging decrypted callback messages
// (patient data) at debug level on stdout.
func silenceSDKLog() {
	logrus.SetLevel(logrus.ErrorLevel)
}

// DoMP runs call, a mini-program API call that uses the access token; when
// WeChat refuses the token (40001/40014/42001), it evicts that token and
// retries exactly once. The error, if any, is an *Error.
func (c *Clients) DoMP(ctx context.Context, op string, call func(ctx context.Context) error) error {
	return do(ctx, c.MPToken, op, call)
}

// DoOA is DoMP for the official account.
func (c *Clients) DoOA(ctx context.Context, op string, call func(ctx context.Context) error) error {
	return do(ctx, c.OAToken, op, call)
}

func do(ctx context.Context, ts *TokenSource, op string, call func(ctx context.Context) error) error {
	tok, err := ts.GetAccessTokenContext(ctx)
	if err != nil {
		return Classify(op, err)
	}
	err = Classify(op, call(ctx))
	if OutcomeOf(err) == OutcomeRefreshToken {
		ts.Invalidate(ctx, tok)
		err = Classify(op, call(ctx))
	}
	return err
}

// Session is what code2session tells about a mini-program user. The session
// key stays here: it never leaves the server and is never logged.
type Session struct {
	OpenID  string
	UnionID string
}

// Code2Session exchanges a wx.login code for the user's identity.
func (c *Clients) Code2Session(ctx context.Context, code string) (Session, error) {
	res, err := c.MP.GetAuth().Code2SessionContext(ctx, code)
	if err != nil {
		return Session{}, Classify("code2session", err)
	}
	return Session{OpenID: res.OpenID, UnionID: res.UnionID}, nil
}

// PhoneNumber exchanges a getPhoneNumber code for the user's phone number.
func (c *Clients) PhoneNumber(ctx context.Context, code string) (string, error) {
	var phone string
	err := c.DoMP(ctx, "get phone number", func(ctx context.Context) error {
		res, err := c.MP.GetAuth().GetPhoneNumberContext(ctx, code)
		if err != nil {
			return err
		}
		phone = res.PhoneInfo.PurePhoneNumber
		return nil
	})
	return phone, err
}

// sdkCacheAdapter lets the SDK's own caches (JS tickets and the like) use
// coord instead of the SDK's racy cache.Memory or its go-redis v8 cache.
type sdkCacheAdapter struct{ s coord.Store }

var _ cache.Cache = sdkCacheAdapter{}

func (a sdkCacheAdapter) Get(key string) interface{} {
	v, ok, err := a.s.Get(context.Background(), "wxsdk:"+key)
	if err != nil || !ok {
		return nil
	}
	return v
}

func (a sdkCacheAdapter) Set(key string, val interface{}, timeout time.Duration) error {
	s, _ := val.(string)
	return a.s.Set(context.Background(), "wxsdk:"+key, s, timeout)
}

func (a sdkCacheAdapter) IsExist(key string) bool { return a.Get(key) != nil }

func (a sdkCacheAdapter) Delete(key string) error {
	return a.s.Del(context.Background(), "wxsdk:"+key)
}
