package service

import (
	"context"
	"sync"
	"time"
)

// sessionsTopic tells the other instances that sessions or staff accounts
// changed: they drop their cached sessions.
const sessionsTopic = "auth.sessions"

// sessionCacheMax bounds the cache; a full cache starts again empty.
const sessionCacheMax = 100_000

// sessionCache remembers, for up to 30 s, who a live session's token
// stands for, so most requests do not read their session row. Any update or
// delete of a session or staff row, on any path, drops the whole cache once
// committed (model.DB.OnChange), here and on the other instances through the
// bus; the TTL bounds what a lost bus message could leave.
//
// An entry read from the database before a drop is not stored after it: put
// takes the number of drops seen when the read began (epoch).
type sessionCache struct {
	ttl     time.Duration
	mu      sync.RWMutex
	epoch   uint64
	entries map[string]cachedSession
}

type cachedSession struct {
	p     Principal
	until time.Time
}

func newSessionCache(ttl time.Duration) *sessionCache {
	return &sessionCache{ttl: ttl, entries: map[string]cachedSession{}}
}

// get returns the session's principal while its entry is fresh.
func (c *sessionCache) get(id string, now time.Time) (Principal, bool) {
	if c.ttl <= 0 {
		return Principal{}, false
	}
	c.mu.RLock()
	e, ok := c.entries[id]
	c.mu.RUnlock()
	if !ok || !now.Before(e.until) {
		return Principal{}, false
	}
	return e.p, true
}

// current is the number of drops so far, taken before reading a session.
func (c *sessionCache) current() uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.epoch
}

// put remembers p unless the cache was dropped since epoch.
func (c *sessionCache) put(p Principal, now time.Time, epoch uint64) {
	if c.ttl <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.epoch != epoch {
		return
	}
	if len(c.entries) >= sessionCacheMax {
		c.entries = map[string]cachedSession{}
	}
	c.entries[p.SessionID] = cachedSession{p: p, until: now.Add(c.ttl)}
}

// drop forgets every session.
func (c *sessionCache) drop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch++
	c.entries = map[string]cachedSession{}
}

// sessionsChanged drops this instance's cached sessions and tells the
// others. It runs after the change committed.
func (a *Auth) sessionsChanged() {
	a.sessions.drop()
	if a.bus == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := a.bus.Publish(ctx, sessionsTopic, []byte("*")); err != nil {
		a.cfg.Log.Warn("tell other instances that sessions changed", "err", err)
	}
}

// Watch drops the cached sessions when another instance reports a change,
// until ctx ends.
func (a *Auth) Watch(ctx context.Context) error {
	if a.bus == nil {
		<-ctx.Done()
		return nil
	}
	return listen(ctx, a.bus, sessionsTopic, func([]byte) { a.sessions.drop() })
}
