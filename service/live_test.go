package service_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"careloop/coord"
	"careloop/service"
)

// A staff client that stops reading loses events (and is told to resync)
// without holding up the others; a patient gets only their own, non-staff
// events.
func TestLiveFanOut(t *testing.T) {
	live := service.NewLive(coord.NewMemory(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer live.Close()
	// Sessions are checked for all streams at once; from "checking" on, s1
	// is logged out.
	var checking atomic.Bool
	asked := make(chan int, 100)
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() {
		_ = live.Run(ctx, 20*time.Millisecond, func(_ context.Context, ids []string) (map[string]bool, error) {
			if !checking.Load() {
				return map[string]bool{"s1": true, "s2": true}, nil
			}
			asked <- len(ids)
			return map[string]bool{"s2": true}, nil
		})
		close(ran)
	}()
	defer func() { cancel(); <-ran }()
	slow, doneSlow := live.Staff("s1")
	defer doneSlow()
	fast, doneFast := live.Staff("s2")
	defer doneFast()
	alice, doneAlice := live.Patient(1)
	defer doneAlice()
	bob, doneBob := live.Patient(2)
	defer doneBob()
	if live.Connections() != 4 {
		t.Fatalf("connections: %d", live.Connections())
	}
	// (ctx is the Run context above)
	// 200 events (more than a staff client's buffer) in batches the reading
	// client keeps up with; the other client reads nothing.
	for batch := 0; batch < 10; batch++ {
		for i := 0; i < 20; i++ {
			live.Publish(ctx, service.ChatEvent{Type: "message", ConversationID: uint64(batch*20 + i), PatientID: 1})
		}
		for i := 0; i < 20; i++ {
			select {
			case <-fast.C:
			case <-time.After(5 * time.Second):
				t.Fatalf("batch %d: the reading client is held up by the one that does not read", batch)
			}
		}
	}
	live.Publish(ctx, service.ChatEvent{Type: "escalated", ConversationID: 999, PatientID: 1, StaffOnly: true})
	select {
	case <-fast.C:
	case <-time.After(5 * time.Second):
		t.Fatal("staff-only event not delivered to staff")
	}
	if !slow.Lagged.Load() {
		t.Fatal("the client that did not read was not marked to resync")
	}
	// Alice's client: her messages only, no staff-only event.
	seen := 0
	for {
		select {
		case b := <-alice.C:
			var e service.ChatEvent
			_ = json.Unmarshal(b, &e)
			if e.StaffOnly || e.Type == "escalated" || e.PatientID != 1 {
				t.Fatalf("patient got %s", b)
			}
			seen++
			continue
		case b := <-bob.C:
			t.Fatalf("another patient got %s", b)
		case <-time.After(100 * time.Millisecond):
		}
		break
	}
	if seen == 0 {
		t.Fatal("the patient got none of her events")
	}
	// s1 is logged out now.
	checking.Store(true)
	select {
	case <-slow.Ended:
	case <-time.After(2 * time.Second):
		t.Fatal("the stream of an ended session was not ended")
	}
	select {
	case <-fast.Ended:
		t.Fatal("a valid session's stream was ended")
	case <-time.After(100 * time.Millisecond):
	}
	if n := <-asked; n != 2 {
		t.Fatalf("sessions checked at once: %d, want 2", n)
	}
	// A stream opened later is checked by the next round.
	late, doneLate := live.Staff("s3")
	defer doneLate()
	for i := 0; i < 2; i++ {
		<-asked
	}
	select {
	case <-late.Ended:
	case <-time.After(2 * time.Second):
		t.Fatal("a session no check reports valid kept its stream")
	}
	doneBob()
	doneBob()                    // a second disconnect changes nothing
	if live.Connections() != 4 { // slow, fast, alice, late
		t.Fatalf("after a disconnect: %d", live.Connections())
	}
}
