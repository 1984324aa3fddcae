package service

import (
	"sync"
	"time"
)

// ttlCache keeps read-mostly values (packages, slot shapes, listings, care
// rules, the level table) for a
// few seconds in this process. Nothing that decides a seat is read from it.
type ttlCache struct {
	mu sync.Mutex
	m  map[string]ttlEntry
}

type ttlEntry struct {
	v       any
	expires time.Time
}

func (c *ttlCache) get(k string) (any, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[k]
	if !ok || time.Now().After(e.expires) {
		return nil, false
	}
	return e.v, true
}

func (c *ttlCache) put(k string, v any, ttl time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) > 10000 {
		c.m = map[string]ttlEntry{}
	}
	c.m[k] = ttlEntry{v: v, expires: time.Now().Add(ttl)}
}

// forget drops k.
func (c *ttlCache) forget(k string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, k)
}
