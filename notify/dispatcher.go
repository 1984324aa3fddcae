package notify

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"gorm.io/gorm"

	"careloop/coord"
	"careloop/model"
)

// Sender delivers through WeChat (wxconfig.Clients satisfies it).
type Sender interface {
	Subscribe(ctx context.Context, openID, templateID, page string, data map[string]string) (string, error)
	Template(ctx context.Context, openID, templateID, clientMsgID, page string, data map[string]string) (string, error)
	// Customer sends an official-account customer-service text message.
	Customer(ctx context.Context, openID, text string) error
}

// Coordinator is the shared state the dispatcher uses (coord.Store
// satisfies it): a global rate, API holds, and wake-ups.
type Coordinator interface {
	AllowN(ctx context.Context, key string, n, limit int, window time.Duration) (int, time.Duration, error)
	Get(ctx context.Context, key string) (string, bool, error)
	Set(ctx context.Context, key, val string, ttl time.Duration) error
	Notify(ctx context.Context, topic string) error
	Subscribe(ctx context.Context, topic string) (<-chan struct{}, func())
}

// WakeTopic is the signal topic that nudges workers.
const WakeTopic = "notify"

// Dispatcher claims due notifications and delivers them.
type Dispatcher struct {
	db     *model.DB
	co     Coordinator
	wake   *coord.Coalescer
	send   Sender
	cfg    Config
	now    func() time.Time
	log    *slog.Logger
	m      *metrics
	holdMu sync.Mutex
	holds  map[string]time.Time // local copy of API holds, refreshed from co
	asked  map[string]time.Time // when each API's hold was last read from co
	// sentQ feeds the committer while Run runs.
	sentQ  chan sentResult
	rateMu sync.Mutex
	tokens map[string]*tokenPool
}

// tokenPool is this worker's share of the global send rate for one second.
type tokenPool struct {
	left int
	ends time.Time
}

// New returns a dispatcher.
func New(db *model.DB, co Coordinator, send Sender, cfg Config, now func() time.Time, log *slog.Logger) *Dispatcher {
	if now == nil {
		now = time.Now
	}
	d := &Dispatcher{db: db, co: co, send: send, cfg: cfg, now: now, log: log, m: newMetrics(),
		holds: map[string]time.Time{}, asked: map[string]time.Time{}, tokens: map[string]*tokenPool{}}
	// A burst of enqueued notices (a booking a millisecond) is one nudge.
	d.wake = coord.NewCoalescer(wakeDelay, func([]string) { _ = d.co.Notify(context.Background(), WakeTopic) })
	return d
}

// wakeDelay gathers the nudges of a burst of enqueued notices into one.
const wakeDelay = 10 * time.Millisecond

// Run claims and delivers until ctx ends, then finishes the sends in
// flight and hands unstarted claims back.
func (d *Dispatcher) Run(ctx context.Context) error {
	wake, stop := d.co.Subscribe(ctx, WakeTopic)
	defer stop()
	jobs := make(chan job)
	var wg sync.WaitGroup
	work := context.WithoutCancel(ctx) // in-flight sends finish after ctx ends
	sentQ := make(chan sentResult, 1024)
	committed := make(chan struct{})
	d.sentQ = sentQ
	go func() { d.commitSent(work, sentQ); close(committed) }()
	for i := 0; i < d.cfg.Concurrency; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				d.deliver(work, &j.n, j.rc)
			}
		}()
	}
	defer func() {
		close(jobs)
		wg.Wait()
		d.sentQ = nil
		close(sentQ)
		<-committed
	}()
	lastSweep := time.Time{}
	for {
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(lastSweep) > d.cfg.Lease/4 {
			d.sweep(ctx)
			d.m.observeDepth(ctx, d)
			lastSweep = time.Now()
		}
		rows, err := d.claim(ctx, d.cfg.Batch)
		if err != nil && ctx.Err() == nil {
			d.log.Warn("claim notifications", "err", err)
		}
		rcs, err := d.recipients(ctx, rows)
		if err != nil {
			d.log.Warn("load recipients", "err", err)
			d.release(context.WithoutCancel(ctx), rows)
			rows = nil
		}
		for i, n := range rows {
			select {
			case jobs <- job{n: n, rc: rcs[n.PatientID]}:
			case <-ctx.Done():
				d.release(context.WithoutCancel(ctx), rows[i:])
				return nil
			}
		}
		if len(rows) == d.cfg.Batch {
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-wake:
		case <-time.After(d.cfg.Poll):
		}
	}
}

// ProcessDue claims what is due now and delivers it in this goroutine,
// batch after batch, until nothing is due; it returns how many it handled.
func (d *Dispatcher) ProcessDue(ctx context.Context) (int, error) {
	total := 0
	d.sweep(ctx)
	for {
		rows, err := d.claim(ctx, d.cfg.Batch)
		if err != nil {
			return total, err
		}
		if len(rows) == 0 {
			return total, nil
		}
		rcs, err := d.recipients(ctx, rows)
		if err != nil {
			d.release(ctx, rows)
			return total, err
		}
		for i := range rows {
			d.deliver(ctx, &rows[i], rcs[rows[i].PatientID])
		}
		total += len(rows)
	}
}

// Wake nudges every worker, within wakeDelay, once for a burst of calls.
func (d *Dispatcher) Wake(context.Context) { d.wake.Add("") }

// bestEffort logs the failure of a write the delivery does not depend on
// (it is redone or corrected later) and reports whether it succeeded.
func (d *Dispatcher) bestEffort(what string, res *gorm.DB) bool {
	if res.Error != nil {
		d.log.Warn("dispatcher: "+what, "err", res.Error)
		return false
	}
	return true
}
