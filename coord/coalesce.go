package coord

import (
	"sync"
	"time"
)

// Coalescer gathers keys asked for within a short delay and hands them to
// flush once, after the delay: a burst of bookings becomes one wake-up of
// the workers and one invalidation per slot group, not one per booking.
// The first key of a burst starts the delay, so none waits longer.
type Coalescer struct {
	delay time.Duration
	flush func(keys []string)

	mu      sync.Mutex
	pending map[string]struct{}
}

// NewCoalescer returns a coalescer that calls flush (on its own goroutine)
// at most once per delay.
func NewCoalescer(delay time.Duration, flush func(keys []string)) *Coalescer {
	return &Coalescer{delay: delay, flush: flush}
}

// Add asks for key to be flushed.
func (c *Coalescer) Add(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pending == nil {
		c.pending = map[string]struct{}{}
		time.AfterFunc(c.delay, c.run)
	}
	c.pending[key] = struct{}{}
}

func (c *Coalescer) run() {
	c.mu.Lock()
	keys := make([]string, 0, len(c.pending))
	for k := range c.pending {
		keys = append(keys, k)
	}
	c.pending = nil
	c.mu.Unlock()
	c.flush(keys)
}
