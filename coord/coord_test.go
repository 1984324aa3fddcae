package coord_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"careloop/coord"
	"careloop/testenv"
)

func stores(t *testing.T) map[string]coord.Store {
	return map[string]coord.Store{"memory": coord.NewMemory(), "redis": testenv.Redis(t)}
}

func TestStores(t *testing.T) {
	for name, s := range stores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			// Cache and compare-and-delete.
			s.Set(ctx, "k", "v1", time.Minute)
			if v, ok, _ := s.Get(ctx, "k"); !ok || v != "v1" {
				t.Fatalf("get: %q %v", v, ok)
			}
			if ok, _ := s.CompareAndDelete(ctx, "k", "other"); ok {
				t.Fatal("deleted a value that did not match")
			}
			if ok, _ := s.CompareAndDelete(ctx, "k", "v1"); !ok {
				t.Fatal("did not delete the matching value")
			}
			if _, ok, _ := s.Get(ctx, "k"); ok {
				t.Fatal("still there")
			}
			// Locks exclude, and only the holder releases.
			unlock, err := s.TryLock(ctx, "L", time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.TryLock(ctx, "L", time.Minute); !errors.Is(err, coord.ErrLockHeld) {
				t.Fatalf("second lock: %v", err)
			}
			unlock()
			if u, err := s.TryLock(ctx, "L", time.Minute); err != nil {
				t.Fatalf("after unlock: %v", err)
			} else {
				u()
			}
			// A fixed window: 5 of 8 racing callers get through.
			var got atomic.Int32
			var wg sync.WaitGroup
			for i := 0; i < 8; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if ok, _, err := s.Allow(ctx, "rate", 5, time.Minute); err == nil && ok {
						got.Add(1)
					}
				}()
			}
			wg.Wait()
			if got.Load() != 5 {
				t.Fatalf("allowed %d of 8 with a limit of 5", got.Load())
			}
			if ok, wait, _ := s.Allow(ctx, "rate", 5, time.Minute); ok || wait <= 0 || wait > time.Minute {
				t.Fatalf("over the limit: ok=%v wait=%s", ok, wait)
			}
			// Hit gives racing callers each their own count: 1..8, once each.
			counts := make([]atomic.Int32, 9)
			for i := 0; i < 8; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if n, err := s.Hit(ctx, "hits", time.Minute); err == nil && n >= 1 && n <= 8 {
						counts[n].Add(1)
					}
				}()
			}
			wg.Wait()
			for n := 1; n <= 8; n++ {
				if counts[n].Load() != 1 {
					t.Fatalf("count %d was handed out %d times (want once each of 1..8)", n, counts[n].Load())
				}
			}
			// AllowN grants what is left of the window, and no more.
			total := 0
			for i := 0; i < 5; i++ {
				n, _, err := s.AllowN(ctx, "rateN", 4, 10, time.Minute)
				if err != nil {
					t.Fatal(err)
				}
				total += n
			}
			if total != 10 {
				t.Fatalf("AllowN granted %d in a window of 10", total)
			}
			// Signals reach subscribers.
			ch, stop := s.Subscribe(ctx, "topic")
			defer stop()
			time.Sleep(50 * time.Millisecond) // the Redis subscription is asynchronous
			s.Notify(ctx, "topic")
			select {
			case <-ch:
			case <-time.After(2 * time.Second):
				t.Fatal("no wake-up")
			}
			// The bus carries payloads, in order, to every listener of the
			// topic and to none of another topic's.
			a, stopA := s.Listen(ctx, "bus")
			defer stopA()
			b, stopB := s.Listen(ctx, "bus")
			defer stopB()
			other, stopO := s.Listen(ctx, "other")
			defer stopO()
			time.Sleep(50 * time.Millisecond)
			for _, p := range []string{"one", "two"} {
				if err := s.Publish(ctx, "bus", []byte(p)); err != nil {
					t.Fatal(err)
				}
			}
			for _, l := range []<-chan []byte{a, b} {
				for _, want := range []string{"one", "two"} {
					select {
					case got := <-l:
						if string(got) != want {
							t.Fatalf("got %q, want %q", got, want)
						}
					case <-time.After(2 * time.Second):
						t.Fatalf("%q never arrived", want)
					}
				}
			}
			select {
			case got := <-other:
				t.Fatalf("another topic received %q", got)
			case <-time.After(50 * time.Millisecond):
			}
		})
	}
}
