package coord

import (
	"slices"
	"sync"
	"testing"
	"time"
)

// Racing adds within the delay are flushed once, with every key once; an
// add after a flush starts the next one.
func TestCoalescer(t *testing.T) {
	var mu sync.Mutex
	var flushes [][]string
	done := make(chan struct{}, 4)
	c := NewCoalescer(300*time.Millisecond, func(keys []string) {
		slices.Sort(keys)
		mu.Lock()
		flushes = append(flushes, keys)
		mu.Unlock()
		done <- struct{}{}
	})
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.Add([]string{"a", "b"}[i%2])
		}()
	}
	wg.Wait()
	<-done
	c.Add("c")
	<-done
	mu.Lock()
	defer mu.Unlock()
	if len(flushes) != 2 || !slices.Equal(flushes[0], []string{"a", "b"}) || !slices.Equal(flushes[1], []string{"c"}) {
		t.Fatalf("flushes: %q", flushes)
	}
}
