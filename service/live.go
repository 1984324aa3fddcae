package service

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Bus carries live events between processes (coord.Store satisfies it).
type Bus interface {
	Publish(ctx context.Context, topic string, payload []byte) error
	Listen(ctx context.Context, topic string) (<-chan []byte, func())
}

// listen calls fn with each message of topic on bus until ctx ends or the
// bus closes the subscription: the loop of every "another instance says"
// watcher.
func listen(ctx context.Context, bus Bus, topic string, fn func(payload []byte)) error {
	ch, stop := bus.Listen(ctx, topic)
	defer stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case payload, ok := <-ch:
			if !ok {
				return nil
			}
			fn(payload)
		}
	}
}

// liveTopic is the bus topic of chat events.
const liveTopic = "chat"

// ChatEvent is what live clients receive: a new message, an assignment, an
// escalation, a closed conversation.
type ChatEvent struct {
	Type           string       `json:"type"` // message, assigned, escalated, closed, read
	ConversationID uint64       `json:"conversation_id"`
	PatientID      uint64       `json:"patient_id"`
	DoctorID       *uint64      `json:"doctor_id,omitempty"`
	Message        *ChatMessage `json:"message,omitempty"`
	// StaffOnly events (escalations, staff reads) are not sent to patients.
	StaffOnly bool `json:"-"`
}

// ChatMessage is a message as both sides see it.
type ChatMessage struct {
	ID             uint64 `json:"id"`
	ConversationID uint64 `json:"conversation_id"`
	Sender         string `json:"sender"`
	StaffID        uint64 `json:"staff_id,omitempty"`
	StaffName      string `json:"staff_name,omitempty"`
	Kind           string `json:"kind"`
	Content        string `json:"content"`
	Channel        string `json:"channel"`
	CreatedAt      string `json:"created_at"`
}

// liveEnvelope is an event on the bus: the payload is encoded once, by the
// publisher, and written as is to every client.
type liveEnvelope struct {
	PatientID uint64          `json:"p"`
	StaffOnly bool            `json:"s,omitempty"`
	Event     json.RawMessage `json:"e"`
}

// LiveClient is one connected client (a staff inbox or a waiting patient).
// Events arrive on C already encoded as JSON; when the client falls behind,
// events are dropped and Lagged is set so that it reloads from the API.
type LiveClient struct {
	C      chan []byte
	Lagged atomic.Bool
	// Ended is closed when the staff member's session is no longer valid
	// (logged out, revoked, account disabled): the stream must end.
	Ended   chan struct{}
	session string
	end     sync.Once
}

// Live fans chat events out to the clients connected to this process. Every
// process listens on the bus, so a message received by one instance reaches
// staff connected to another. NewLive subscribes; Run delivers until its
// context ends.
type Live struct {
	bus     Bus
	log     *slog.Logger
	events  <-chan []byte
	stop    func()
	closing chan struct{}
	drain   sync.Once

	mu       sync.RWMutex
	staff    map[*LiveClient]struct{}
	patients map[uint64]map[*LiveClient]struct{}
	count    atomic.Int64
}

// NewLive subscribes to bus (so that nothing published from now on is
// missed); Run fans the events out, Close unsubscribes.
func NewLive(bus Bus, log *slog.Logger) *Live {
	l := &Live{bus: bus, log: log, closing: make(chan struct{}), staff: map[*LiveClient]struct{}{}, patients: map[uint64]map[*LiveClient]struct{}{}}
	l.events, l.stop = bus.Listen(context.Background(), liveTopic)
	return l
}

// Close unsubscribes from the bus.
func (l *Live) Close() { l.stop() }

// Run fans events out to this process's clients and, every period, checks
// the sessions under which staff streams are held — one query for all of
// them, not one per stream — ending the streams whose session active no
// longer reports. It returns when ctx ends.
func (l *Live) Run(ctx context.Context, every time.Duration, active func(ctx context.Context, sessions []string) (map[string]bool, error)) error {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case p, ok := <-l.events:
			if !ok {
				l.events = nil // unsubscribed (Close): no spinning on a closed channel
				continue
			}
			l.fanOut(p)
		case <-t.C:
			l.checkSessions(ctx, every, active)
		}
	}
}

func (l *Live) checkSessions(ctx context.Context, every time.Duration, active func(ctx context.Context, sessions []string) (map[string]bool, error)) {
	l.mu.RLock()
	var ids []string
	seen := map[string]bool{}
	for c := range l.staff {
		if !seen[c.session] {
			seen[c.session] = true
			ids = append(ids, c.session)
		}
	}
	l.mu.RUnlock()
	if len(ids) == 0 {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, every)
	ok, err := active(cctx, ids)
	cancel()
	if err != nil {
		l.log.Warn("live: session check", "err", err) // keep the streams; try again next time
		return
	}
	l.mu.RLock()
	for c := range l.staff {
		// seen: a stream opened while the check ran waits for the next.
		if seen[c.session] && !ok[c.session] {
			c.end.Do(func() { close(c.Ended) })
		}
	}
	l.mu.RUnlock()
}

// Drain tells connected streams to end (the server is shutting down: a
// stream would otherwise hold the graceful shutdown until its deadline).
// Clients reconnect to another instance.
func (l *Live) Drain() { l.drain.Do(func() { close(l.closing) }) }

// Closing is closed once Drain has been called.
func (l *Live) Closing() <-chan struct{} { return l.closing }

// Connections is how many clients this process holds.
func (l *Live) Connections() int { return int(l.count.Load()) }

// Publish sends ev to every process's clients: all staff inboxes, and the
// patient's own clients unless it is staff-only.
func (l *Live) Publish(ctx context.Context, ev ChatEvent) {
	e, _ := json.Marshal(ev)
	b, _ := json.Marshal(liveEnvelope{PatientID: ev.PatientID, StaffOnly: ev.StaffOnly, Event: e})
	if err := l.bus.Publish(ctx, liveTopic, b); err != nil {
		// Clients also poll: a lost event only delays a message.
		l.log.Warn("live publish", "err", err)
	}
}

func (l *Live) fanOut(payload []byte) {
	var env liveEnvelope
	if json.Unmarshal(payload, &env) != nil {
		return
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	for c := range l.staff {
		send(c, env.Event)
	}
	if !env.StaffOnly {
		for c := range l.patients[env.PatientID] {
			send(c, env.Event)
		}
	}
}

func send(c *LiveClient, ev []byte) {
	select {
	case c.C <- ev:
	default:
		c.Lagged.Store(true)
	}
}

// Staff connects a staff inbox held under session; call the returned func
// on disconnect.
func (l *Live) Staff(session string) (*LiveClient, func()) {
	c := &LiveClient{C: make(chan []byte, 64), Ended: make(chan struct{}), session: session}
	l.mu.Lock()
	l.staff[c] = struct{}{}
	l.mu.Unlock()
	l.count.Add(1)
	var once sync.Once
	return c, func() {
		once.Do(func() {
			l.mu.Lock()
			delete(l.staff, c)
			l.mu.Unlock()
			l.count.Add(-1)
		})
	}
}

// Patient connects one of a patient's clients (a long poll).
func (l *Live) Patient(id uint64) (*LiveClient, func()) {
	c := &LiveClient{C: make(chan []byte, 16), Ended: make(chan struct{})}
	l.mu.Lock()
	if l.patients[id] == nil {
		l.patients[id] = map[*LiveClient]struct{}{}
	}
	l.patients[id][c] = struct{}{}
	l.mu.Unlock()
	l.count.Add(1)
	var once sync.Once
	return c, func() {
		once.Do(func() {
			l.mu.Lock()
			delete(l.patients[id], c)
			if len(l.patients[id]) == 0 {
				delete(l.patients, id)
			}
			l.mu.Unlock()
			l.count.Add(-1)
		})
	}
}
