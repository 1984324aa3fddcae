package coord

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"sync"
	"time"
)

// Memory is the in-process Store used when no Redis is configured.
type Memory struct {
	mu        sync.Mutex
	now       func() time.Time
	values    map[string]memEntry
	windows   map[string]memWindow
	subs      map[string]map[chan struct{}]struct{}
	listeners map[string]map[chan []byte]struct{}
}

type memEntry struct {
	val     string
	expires time.Time // zero: never
}

type memWindow struct {
	start time.Time
	count int
}

// NewMemory returns an empty in-process Store.
func NewMemory() *Memory {
	return &Memory{
		now:     time.Now,
		values:  map[string]memEntry{},
		windows: map[string]memWindow{},
		subs:    map[string]map[chan struct{}]struct{}{},
	}
}

// Kind implements Store.
func (m *Memory) Kind() string { return "memory" }

// Ping implements Store; memory is always there.
func (m *Memory) Ping(context.Context) error { return nil }

// Close implements Store.
func (m *Memory) Close() error { return nil }

func (m *Memory) getLocked(key string) (string, bool) {
	e, ok := m.values[key]
	if !ok {
		return "", false
	}
	if !e.expires.IsZero() && !m.now().Before(e.expires) {
		delete(m.values, key)
		return "", false
	}
	return e.val, true
}

// Get implements Cache.
func (m *Memory) Get(_ context.Context, key string) (string, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.getLocked(key)
	return v, ok, nil
}

// Set implements Cache.
func (m *Memory) Set(_ context.Context, key, val string, ttl time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := memEntry{val: val}
	if ttl > 0 {
		e.expires = m.now().Add(ttl)
	}
	m.values[key] = e
	return nil
}

// Del implements Cache.
func (m *Memory) Del(_ context.Context, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.values, key)
	return nil
}

// CompareAndDelete implements Cache.
func (m *Memory) CompareAndDelete(_ context.Context, key, val string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if v, ok := m.getLocked(key); ok && v == val {
		delete(m.values, key)
		return true, nil
	}
	return false, nil
}

// TryLock implements Locker.
func (m *Memory) TryLock(_ context.Context, key string, ttl time.Duration) (func(), error) {
	key = "lock:" + key
	token := randomToken()
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, held := m.getLocked(key); held {
		return nil, ErrLockHeld
	}
	m.values[key] = memEntry{val: token, expires: m.now().Add(ttl)}
	return func() { _, _ = m.CompareAndDelete(context.Background(), key, token) }, nil
}

// Allow implements Limiter.
func (m *Memory) Allow(_ context.Context, key string, limit int, window time.Duration) (bool, time.Duration, error) {
	n, resetIn := m.hit(key, window)
	if n > limit {
		return false, resetIn, nil
	}
	return true, 0, nil
}

// Hit implements Limiter.
func (m *Memory) Hit(_ context.Context, key string, window time.Duration) (int, error) {
	n, _ := m.hit(key, window)
	return n, nil
}

// hit counts one event in key's window and returns the count and how long
// until the window resets.
func (m *Memory) hit(key string, window time.Duration) (int, time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	w := m.windows[key]
	if w.start.IsZero() || !now.Before(w.start.Add(window)) {
		w = memWindow{start: now}
	}
	w.count++
	m.windows[key] = w
	if len(m.windows) > 100000 {
		m.sweepWindowsLocked(now, window)
	}
	return w.count, w.start.Add(window).Sub(now)
}

// AllowN implements Limiter.
func (m *Memory) AllowN(_ context.Context, key string, n, limit int, window time.Duration) (int, time.Duration, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	w := m.windows[key]
	if w.start.IsZero() || !now.Before(w.start.Add(window)) {
		w = memWindow{start: now}
	}
	granted := max(0, min(n, limit-w.count))
	w.count += granted
	m.windows[key] = w
	return granted, w.start.Add(window).Sub(now), nil
}

// Reset implements Limiter.
func (m *Memory) Reset(_ context.Context, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.windows, key)
	return nil
}

// sweepWindowsLocked drops windows that have certainly ended, so that a
// long-running process does not grow without bound.
func (m *Memory) sweepWindowsLocked(now time.Time, window time.Duration) {
	for k, w := range m.windows {
		if now.Sub(w.start) > window && now.Sub(w.start) > time.Hour {
			delete(m.windows, k)
		}
	}
}

// Notify implements Signal.
func (m *Memory) Notify(_ context.Context, topic string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for ch := range m.subs[topic] {
		select {
		case ch <- struct{}{}:
		default: // a wake-up is already pending
		}
	}
	return nil
}

// Subscribe implements Signal.
func (m *Memory) Subscribe(_ context.Context, topic string) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	m.mu.Lock()
	if m.subs[topic] == nil {
		m.subs[topic] = map[chan struct{}]struct{}{}
	}
	m.subs[topic][ch] = struct{}{}
	m.mu.Unlock()
	return ch, func() {
		m.mu.Lock()
		delete(m.subs[topic], ch)
		m.mu.Unlock()
	}
}

// Publish implements Bus.
func (m *Memory) Publish(_ context.Context, topic string, payload []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for ch := range m.listeners[topic] {
		select {
		case ch <- payload:
		default: // the listener is behind: drop rather than block
		}
	}
	return nil
}

// Listen implements Bus.
func (m *Memory) Listen(_ context.Context, topic string) (<-chan []byte, func()) {
	ch := make(chan []byte, listenBuffer)
	m.mu.Lock()
	if m.listeners == nil {
		m.listeners = map[string]map[chan []byte]struct{}{}
	}
	if m.listeners[topic] == nil {
		m.listeners[topic] = map[chan []byte]struct{}{}
	}
	m.listeners[topic][ch] = struct{}{}
	m.mu.Unlock()
	return ch, func() {
		m.mu.Lock()
		delete(m.listeners[topic], ch)
		m.mu.Unlock()
	}
}

func randomToken() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
