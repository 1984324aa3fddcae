package wxconfig

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"careloop/coord"
)

// TokenSource is the access-token handle for one WeChat app, shared by every
// careloop process through coord (Redis in production): one refresher at a
// time under a lock, the token in the shared cache, and eviction of a token
// WeChat refused so that the next caller fetches a fresh one. It uses the
// stable_token endpoint in its normal (non-forced) mode, which hands every
// caller the same token while it lives, so even a fetch that bypasses the
// cache (Redis down) cannot invalidate the token other processes hold.
type TokenSource struct {
	appID, secret string
	store         coord.Store
	client        *http.Client
	log           *slog.Logger
	cacheKey      string

	mu    sync.Mutex // guards local and memo
	local struct {   // the fallback when the shared cache is down
		tok     string
		expires time.Time
	}
	// memo keeps the shared token in this process for a few seconds, so
	// that a send does not cost a Redis round trip for the token. A token
	// WeChat refuses is evicted here and in the shared cache at once.
	memo struct {
		tok     string
		expires time.Time
	}
}

// memoTTL bounds how long a process trusts its copy of the shared token.
const memoTTL = 10 * time.Second

// NewTokenSource returns the handle for appID.
func NewTokenSource(appID, secret string, store coord.Store, client *http.Client, log *slog.Logger) *TokenSource {
	return &TokenSource{
		appID: appID, secret: secret, store: store, client: client, log: log,
		cacheKey: "wx:access_token:" + appID,
	}
}

// GetAccessToken implements the SDK's credential.AccessTokenHandle.
func (t *TokenSource) GetAccessToken() (string, error) {
	return t.GetAccessTokenContext(context.Background())
}

// GetAccessTokenContext implements the SDK's credential.AccessTokenContextHandle.
func (t *TokenSource) GetAccessTokenContext(ctx context.Context) (string, error) {
	t.mu.Lock()
	if t.memo.tok != "" && time.Now().Before(t.memo.expires) {
		tok := t.memo.tok
		t.mu.Unlock()
		return tok, nil
	}
	t.mu.Unlock()
	tok, err := t.shared(ctx)
	if err == nil {
		t.mu.Lock()
		t.memo.tok, t.memo.expires = tok, time.Now().Add(memoTTL)
		t.mu.Unlock()
	}
	return tok, err
}

// shared reads the token from the shared cache, fetching it (once across
// every process) when it is not there.
func (t *TokenSource) shared(ctx context.Context) (string, error) {
	tok, ok, err := t.store.Get(ctx, t.cacheKey)
	if err == nil && ok && tok != "" {
		return tok, nil
	}
	if err != nil {
		return t.fallback(ctx, err)
	}
	unlock, err := coord.LockWait(ctx, t.store, t.cacheKey, 15*time.Second, 15*time.Second)
	if err != nil {
		return t.fallback(ctx, err)
	}
	defer unlock()
	if tok, ok, err := t.store.Get(ctx, t.cacheKey); err == nil && ok && tok != "" {
		return tok, nil
	}
	tok, ttl, err := t.fetch(ctx)
	if err != nil {
		return "", err
	}
	if err := t.store.Set(ctx, t.cacheKey, tok, ttl); err != nil {
		t.log.Warn("cache access token", "appid", t.appID, "err", err)
	}
	return tok, nil
}

// fallback serves from a process-local memo when the shared cache or lock is
// unavailable.
func (t *TokenSource) fallback(ctx context.Context, cause error) (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.local.tok != "" && time.Now().Before(t.local.expires) {
		return t.local.tok, nil
	}
	t.log.Warn("shared token cache unavailable, fetching directly", "appid", t.appID, "err", cause)
	tok, ttl, err := t.fetch(ctx)
	if err != nil {
		return "", err
	}
	t.local.tok, t.local.expires = tok, time.Now().Add(min(ttl, time.Minute))
	return tok, nil
}

// Invalidate evicts tok if it is still the cached token, so that exactly one
// of the callers that saw WeChat refuse it causes a refresh.
func (t *TokenSource) Invalidate(ctx context.Context, tok string) {
	if _, err := t.store.CompareAndDelete(ctx, t.cacheKey, tok); err != nil {
		t.log.Warn("evict access token", "appid", t.appID, "err", err)
	}
	t.mu.Lock()
	if t.local.tok == tok {
		t.local.tok = ""
	}
	if t.memo.tok == tok {
		t.memo.tok = ""
	}
	t.mu.Unlock()
}

func (t *TokenSource) fetch(ctx context.Context) (string, time.Duration, error) {
	body, _ := json.Marshal(map[string]any{
		"grant_type": "client_credential", "appid": t.appID, "secret": t.secret, "force_refresh": false,
	})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+APIHost+"/cgi-bin/stable_token", bytes.NewReader(body))
	if err != nil {
		return "", 0, Classify("fetch access token", err)
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := t.client.Do(req)
	if err != nil {
		return "", 0, Classify("fetch access token", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return "", 0, &Error{Op: "fetch access token", HTTPStatus: res.StatusCode, Msg: fmt.Sprintf("http status %d", res.StatusCode)}
	}
	raw, err := io.ReadAll(io.LimitReader(res.Body, 1<<16))
	if err != nil {
		return "", 0, Classify("fetch access token", err)
	}
	var out struct {
		ErrCode     int    `json:"errcode"`
		ErrMsg      string `json:"errmsg"`
		AccessToken string `json:"access_token"`
		ExpiresIn   int    `json:"expires_in"`
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		return "", 0, &Error{Op: "fetch access token", Transport: true, Msg: "bad json"}
	}
	if out.ErrCode != 0 || out.AccessToken == "" {
		// On this endpoint 40001 means a wrong secret: not worth retrying.
		return "", 0, &Error{Op: "fetch access token", Code: out.ErrCode, Msg: out.ErrMsg}
	}
	// Refresh a little before WeChat does; a short-lived token (the end of
	// its life) is kept for half of what is left rather than not at all.
	ttl := time.Duration(out.ExpiresIn) * time.Second
	if ttl > 10*time.Minute {
		ttl -= 5 * time.Minute
	} else {
		ttl /= 2
	}
	if ttl < time.Second {
		ttl = time.Second
	}
	return out.AccessToken, ttl, nil
}
