package app_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"careloop/app"
	"careloop/model"
)

func loginMany(t *testing.T, a *app.App, prefix string, n int) []string {
	toks := make([]string, n)
	for i := range toks {
		toks[i], _ = login(t, a.Router, fmt.Sprintf("dev:%s%d", prefix, i))
	}
	return toks
}

// race runs fn(i) for i in [0,n) all at once and returns the statuses.
func race(n int, fn func(i int) response) []response {
	out := make([]response, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			out[i] = fn(i)
		}()
	}
	close(start)
	wg.Wait()
	return out
}

func countBy(rs []response) map[string]int {
	m := map[string]int{}
	for _, r := range rs {
		k := fmt.Sprint(r.Status)
		if c := r.ErrCode(); c != "" {
			k += " " + c
		}
		m[k]++
	}
	return m
}

func activeBookings(a *app.App, slotID uint64) int64 {
	var n int64
	a.DB.Gorm().Model(&model.Booking{}).Where("slot_id = ? AND status = ?", slotID, model.BookingBooked).Count(&n)
	return n
}

// 500 patients race for 50 seats: exactly 50 bookings, the counter equals
// the bookings, every racer gets a true answer.
func TestBookingRace500For50(t *testing.T) {
	forEachBackend(t, nil, func(t *testing.T, a *app.App) {
		pkg := anyPackage(t, a)
		sl := testSlot(t, a, "06:00", 50)
		toks := loginMany(t, a, "racer", 500)
		start := time.Now()
		rs := race(500, func(i int) response {
			return bookCall(t, a.Router, toks[i], fmt.Sprintf("race-%d", i), map[string]any{"package_id": pkg.ID, "slot_id": sl.ID})
		})
		t.Logf("%s: 500 racers settled in %s: %v", a.DB.Dialect(), time.Since(start).Round(time.Millisecond), countBy(rs))
		c := countBy(rs)
		if c["201"] != 50 || c["409 slot_full"] != 450 {
			t.Fatalf("outcomes: %v", c)
		}
		var s model.Slot
		a.DB.Gorm().Where("id = ?", sl.ID).Take(&s)
		if s.Booked != 50 || activeBookings(a, sl.ID) != 50 {
			t.Fatalf("booked counter %d, active bookings %d", s.Booked, activeBookings(a, sl.ID))
		}
		// Every 201 is a real booking of that patient.
		for i, r := range rs {
			if r.Status == 201 {
				var b model.Booking
				if err := a.DB.Gorm().Where("id = ?", uint64(r.Body["id"].(float64))).Take(&b).Error; err != nil || b.IdempotencyKey != fmt.Sprintf("race-%d", i) {
					t.Fatalf("racer %d was told it booked: %+v %v", i, b, err)
				}
			}
		}
	})
}

// Bookers and cancellers interleave: the counter always equals the active
// bookings and never passes the capacity.
func TestBookingRaceWithCancellations(t *testing.T) {
	forEachBackend(t, nil, func(t *testing.T, a *app.App) {
		pkg := anyPackage(t, a)
		sl := testSlot(t, a, "06:00", 30)
		holders := loginMany(t, a, "holder", 30)
		ids := make([]uint64, 30)
		for i, tok := range holders {
			r := bookCall(t, a.Router, tok, "hold", map[string]any{"package_id": pkg.ID, "slot_id": sl.ID})
			if r.Status != 201 {
				t.Fatalf("fill: %d %s", r.Status, r.Raw)
			}
			ids[i] = uint64(r.Body["id"].(float64))
		}
		newcomers := loginMany(t, a, "newcomer", 120)
		rs := race(150, func(i int) response {
			if i%5 == 0 { // 30 cancellations among 120 bookings
				k := i / 5
				return call(t, a.Router, "POST", fmt.Sprintf("/api/mp/bookings/%d/cancel", ids[k]), holders[k], nil)
			}
			k := i - i/5 - 1
			return bookCall(t, a.Router, newcomers[k], "new", map[string]any{"package_id": pkg.ID, "slot_id": sl.ID})
		})
		c := countBy(rs)
		var s model.Slot
		a.DB.Gorm().Where("id = ?", sl.ID).Take(&s)
		active := activeBookings(a, sl.ID)
		t.Logf("%s: %v; booked=%d active=%d", a.DB.Dialect(), c, s.Booked, active)
		if c["200"] != 30 || s.Booked != int(active) || s.Booked > 30 || c["201"] != 30-(30-s.Booked) {
			t.Fatalf("outcomes %v, booked %d, active %d", c, s.Booked, active)
		}
	})
}

func TestBookingRaceOneKeyAndOnePerson(t *testing.T) {
	forEachBackend(t, nil, func(t *testing.T, a *app.App) {
		pkg := anyPackage(t, a)
		sl := testSlot(t, a, "06:00", 100)
		other := testSlot(t, a, "07:00", 100)
		tok, _ := login(t, a.Router, "dev:clicker")
		// 20 requests with one key: one booking, every answer the same booking.
		rs := race(20, func(int) response {
			return bookCall(t, a.Router, tok, "same-key", map[string]any{"package_id": pkg.ID, "slot_id": sl.ID})
		})
		ids := map[float64]bool{}
		for _, r := range rs {
			if r.Status != 201 {
				t.Fatalf("same key: %d %s", r.Status, r.Raw)
			}
			ids[r.Body["id"].(float64)] = true
		}
		if len(ids) != 1 || activeBookings(a, sl.ID) != 1 {
			t.Fatalf("one key made %d bookings", len(ids))
		}
		var s model.Slot
		a.DB.Gorm().Where("id = ?", sl.ID).Take(&s)
		if s.Booked != 1 {
			t.Fatalf("one key took %d seats", s.Booked)
		}
		// 20 requests from one person for one day, each with its own key.
		tok2, _ := login(t, a.Router, "dev:scripter")
		rs = race(20, func(i int) response {
			slot := sl.ID
			if i%2 == 1 {
				slot = other.ID
			}
			return bookCall(t, a.Router, tok2, fmt.Sprintf("k%d", i), map[string]any{"package_id": pkg.ID, "slot_id": slot})
		})
		if c := countBy(rs); c["201"] != 1 || c["409 duplicate_booking"] != 19 {
			t.Fatalf("one person, one day: %v", c)
		}
		var total int64
		a.DB.Gorm().Model(&model.Slot{}).Where("id IN ?", []uint64{sl.ID, other.ID}).Select("SUM(booked)").Scan(&total)
		if total != 2 {
			t.Fatalf("seats taken: %d, want 2 (one per person)", total)
		}
	})
}

// A reschedule and a booking race for the last seat: never over capacity.
func TestRescheduleRacesBookingForLastSeat(t *testing.T) {
	forEachBackend(t, nil, func(t *testing.T, a *app.App) {
		pkg := anyPackage(t, a)
		for round := 0; round < 10; round++ {
			from := testSlot(t, a, fmt.Sprintf("%02d:15", round+11), 5)
			last := testSlot(t, a, fmt.Sprintf("%02d:45", round+11), 1)
			mover, _ := login(t, a.Router, fmt.Sprintf("dev:mover%d", round))
			booker, _ := login(t, a.Router, fmt.Sprintf("dev:booker%d", round))
			r := bookCall(t, a.Router, mover, "m", map[string]any{"package_id": pkg.ID, "slot_id": from.ID})
			bid := uint64(r.Body["id"].(float64))
			rs := race(2, func(i int) response {
				if i == 0 {
					return call(t, a.Router, "POST", fmt.Sprintf("/api/mp/bookings/%d/reschedule", bid), mover, map[string]any{"slot_id": last.ID})
				}
				return bookCall(t, a.Router, booker, "b", map[string]any{"package_id": pkg.ID, "slot_id": last.ID})
			})
			var l, f model.Slot
			a.DB.Gorm().Where("id = ?", last.ID).Take(&l)
			a.DB.Gorm().Where("id = ?", from.ID).Take(&f)
			ok := 0
			for _, r := range rs {
				if r.Status == 200 || r.Status == 201 {
					ok++
				} else if r.ErrCode() != "slot_full" {
					t.Fatalf("round %d: %d %s", round, r.Status, r.Raw)
				}
			}
			if l.Booked != 1 || ok != 1 || int64(l.Booked) != activeBookings(a, last.ID) || int64(f.Booked) != activeBookings(a, from.ID) {
				t.Fatalf("round %d: last booked=%d, winners=%d, from booked=%d", round, l.Booked, ok, f.Booked)
			}
		}
	})
}
