package notify

import (
	"testing"
	"time"
)

// The retry policy: the pause doubles from BackoffBase up to BackoffMax,
// and the attempt that spends MaxAttempts gives up.
func TestNextRetry(t *testing.T) {
	c := Config{BackoffBase: 30 * time.Second, BackoffMax: 10 * time.Minute, MaxAttempts: 6}
	want := []time.Duration{30 * time.Second, time.Minute, 2 * time.Minute, 4 * time.Minute, 8 * time.Minute, 10 * time.Minute}
	for i, w := range want {
		pause, giveUp := c.nextRetry(i + 1)
		if pause != w {
			t.Errorf("after attempt %d: pause %v, want %v", i+1, pause, w)
		}
		if giveUp != (i+1 >= 6) {
			t.Errorf("after attempt %d: give up %v", i+1, giveUp)
		}
	}
	if pause, _ := c.nextRetry(0); pause != 30*time.Second {
		t.Errorf("before any attempt: %v", pause)
	}
	if pause, _ := c.nextRetry(200); pause != 10*time.Minute {
		t.Errorf("a shift past int64 is the maximum: %v", pause)
	}
	for range 1000 {
		if j := jitter(time.Minute); j < 30*time.Second || j >= 90*time.Second {
			t.Fatalf("jitter of a minute: %v", j)
		}
	}
}
