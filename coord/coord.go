// Package coord provides the small coordination primitives careloop shares
// between instances: a cache, a lock, a rate limiter and wake-up signals.
// With Redis they span every process; without it the in-process versions give
// the same behaviour inside one process. The database stays the source of
// truth: losing what is kept here loses nothing but speed.
package coord

import (
	"context"
	"errors"
	"time"
)

// ErrLockHeld is returned by TryLock when another holder has the lock.
var ErrLockHeld = errors.New("lock held elsewhere")

// Cache keeps short-lived string values.
type Cache interface {
	// Get returns the value and whether it was present.
	Get(ctx context.Context, key string) (string, bool, error)
	// Set stores val for ttl (ttl <= 0: no expiry).
	Set(ctx context.Context, key, val string, ttl time.Duration) error
	// Del removes key.
	Del(ctx context.Context, key string) error
	// CompareAndDelete removes key only while it still holds val, and says
	// whether it did.
	CompareAndDelete(ctx context.Context, key, val string) (bool, error)
}

// Locker grants short exclusive leases.
type Locker interface {
	// TryLock takes the lease on key for ttl or returns ErrLockHeld. The
	// returned func releases it, only if still held by this caller.
	TryLock(ctx context.Context, key string, ttl time.Duration) (unlock func(), err error)
}

// Limiter counts events in fixed windows.
type Limiter interface {
	// Allow records one event for key and reports whether it is within limit
	// events per window; when not, retryAfter says when the window resets.
	Allow(ctx context.Context, key string, limit int, window time.Duration) (ok bool, retryAfter time.Duration, err error)
	// AllowN asks for n events at once and returns how many fit (0..n) and
	// how long until the window resets.
	AllowN(ctx context.Context, key string, n, limit int, window time.Duration) (granted int, resetIn time.Duration, err error)
	// Hit records one event for key and returns how many key has had in
	// this window, counting it (racing callers each get their own count).
	Hit(ctx context.Context, key string, window time.Duration) (int, error)
	// Reset forgets key's count.
	Reset(ctx context.Context, key string) error
}

// Signal wakes waiters on a topic; a lost signal only delays work that a
// poll will find anyway.
type Signal interface {
	Notify(ctx context.Context, topic string) error
	// Subscribe returns a channel that receives after each Notify on topic, and
	// a func to stop.
	Subscribe(ctx context.Context, topic string) (<-chan struct{}, func())
}

// Bus carries small messages to every process listening on a topic (live
// chat events). Delivery is best-effort: a listener too slow to keep up
// loses messages rather than holding up the others, and clients catch up
// from the database.
type Bus interface {
	Publish(ctx context.Context, topic string, payload []byte) error
	// Listen returns a channel of the payloads published on topic from now
	// on, and a func to stop.
	Listen(ctx context.Context, topic string) (<-chan []byte, func())
}

// listenBuffer is how many payloads a listener may fall behind by.
const listenBuffer = 1024

// Store bundles the primitives with a health check.
type Store interface {
	Cache
	Locker
	Limiter
	Signal
	Bus
	// Ping reports whether the backing service answers.
	Ping(ctx context.Context) error
	// Kind names the implementation: "redis" or "memory".
	Kind() string
	Close() error
}

// LockWait tries TryLock until it succeeds, ctx ends or wait elapses.
func LockWait(ctx context.Context, l Locker, key string, ttl, wait time.Duration) (func(), error) {
	deadline := time.Now().Add(wait)
	backoff := 5 * time.Millisecond
	for {
		unlock, err := l.TryLock(ctx, key, ttl)
		if err == nil {
			return unlock, nil
		}
		if !errors.Is(err, ErrLockHeld) || time.Now().After(deadline) {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(backoff):
		}
		if backoff < 100*time.Millisecond {
			backoff *= 2
		}
	}
}
