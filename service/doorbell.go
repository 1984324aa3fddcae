package service

import (
	"context"
	"log/slog"
	"time"
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
