package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"careloop/coord"
)

// doorbell wakes a background worker before its next tick: ring it when
// work arrives (an upload, a publish, a mass send); rings while the worker
// is busy fold into one.
type doorbell chan struct{}

func newDoorbell() doorbell { return make(doorbell, 1) }

func (d doorbell) ring() {
	select {
	case d <- struct{}{}:
	default:
	}
}

// serve runs round every period, and at once when rung, until ctx ends;
// round reports whether it did something, and is run again at once while
// it does. Its errors are logged as what's failing.
func (d doorbell) serve(ctx context.Context, period time.Duration, log *slog.Logger, what string, round func(ctx context.Context) (bool, error)) error {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		for {
			did, err := round(ctx)
			if err != nil && ctx.Err() == nil {
				log.Warn(what, "err", err)
			}
			if !did || err != nil || ctx.Err() != nil {
				break
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-d:
		}
	}
}

// alone runs fn while holding key, so that one instance at a time does it;
// another instance holding key means there is nothing to do now.
func alone(ctx context.Context, locker coord.Locker, key string, ttl time.Duration, fn func() error) error {
	unlock, err := locker.TryLock(ctx, key, ttl)
	if errors.Is(err, coord.ErrLockHeld) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("lock %s: %w", key, err)
	}
	defer unlock()
	return fn()
}
