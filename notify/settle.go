package notify

import (
	"context"
	"fmt"
	mrand "math/rand/v2"
	"strings"
	"time"

	"careloop/model"
)

// settle writes a row's outcome together with what was (last) sent.
func (d *Dispatcher) settle(ctx context.Context, n *model.Notification, fields map[string]any) error {
	fields["channel"], fields["template_id"], fields["payload"], fields["attempts"] = n.Channel, n.TemplateID, model.SealText(n.Payload), n.Attempts
	fields["claim_token"], fields["lease_until"] = "", nil
	return d.db.Conn(ctx).Model(&model.Notification{}).Where("id = ? AND claim_token = ?", n.ID, n.ClaimToken).Updates(fields).Error
}

// sentResult is a delivery to record.
type sentResult struct {
	n     model.Notification
	msgID string
	at    time.Time
}

// markSent records a delivery: through the committer, which writes many in
// one statement, while Run is running; directly otherwise.
func (d *Dispatcher) markSent(ctx context.Context, n *model.Notification, msgID string) error {
	r := sentResult{n: *n, msgID: msgID, at: d.now().UTC()}
	if d.sentQ != nil {
		d.sentQ <- r
		return nil
	}
	return d.writeSent(ctx, []sentResult{r})
}

// commitSent drains the queue of deliveries, writing up to 128 at a time.
func (d *Dispatcher) commitSent(ctx context.Context, q <-chan sentResult) {
	for r := range q {
		batch := []sentResult{r}
	fill:
		for len(batch) < 128 {
			select {
			case r, ok := <-q:
				if !ok {
					break fill
				}
				batch = append(batch, r)
			case <-time.After(2 * time.Millisecond):
				break fill
			}
		}
		// In a transaction of its own: when MySQL picks this statement as a
		// deadlock victim (claims lock the same rows), InTx runs it again,
		// rather than leaving delivered rows unrecorded.
		if err := d.db.InTx(ctx, func(ctx context.Context) error { return d.writeSent(ctx, batch) }); err != nil {
			d.log.Error("record deliveries", "count", len(batch), "err", err)
		}
	}
}

// writeSent records deliveries in one statement (CASE per column), each
// row still guarded by its own claim token.
func (d *Dispatcher) writeSent(ctx context.Context, rs []sentResult) error {
	ids := make([]any, 0, len(rs))
	tokenCase := &strings.Builder{}
	tokenCase.WriteString("CASE id")
	var tokenArgs []any
	cols := []string{"msg_id", "attempts", "channel", "template_id", "payload", "sent_at"}
	cases := make(map[string]*strings.Builder, len(cols))
	caseArgs := make(map[string][]any, len(cols))
	for _, c := range cols {
		cases[c] = &strings.Builder{}
		cases[c].WriteString("CASE id")
	}
	for _, r := range rs {
		ids = append(ids, r.n.ID)
		tokenCase.WriteString(" WHEN ? THEN ?")
		tokenArgs = append(tokenArgs, r.n.ID, r.n.ClaimToken)
		vals := []any{r.msgID, r.n.Attempts, r.n.Channel, r.n.TemplateID, model.SealText(r.n.Payload), r.at}
		for i, c := range cols {
			cases[c].WriteString(" WHEN ? THEN ?")
			caseArgs[c] = append(caseArgs[c], r.n.ID, vals[i])
		}
	}
	var set []string
	var args []any
	for _, c := range cols {
		cases[c].WriteString(" END")
		set = append(set, c+" = "+cases[c].String())
		args = append(args, caseArgs[c]...)
	}
	set = append(set, "status = ?", "last_error = ''", "claim_token = ''", "lease_until = NULL")
	args = append(args, model.NotifySent, ids)
	args = append(args, tokenArgs...)
	// id IN (…) lets the primary key find the rows; each row is still
	// guarded by its own claim token.
	sql := "UPDATE notifications SET " + strings.Join(set, ", ") + " WHERE id IN ? AND claim_token = " + tokenCase.String() + " END"
	return d.db.Conn(ctx).Exec(sql, args...).Error
}

func (d *Dispatcher) finish(ctx context.Context, n *model.Notification, status, why string) error {
	return d.settle(ctx, n, map[string]any{"status": status, "last_error": model.Truncate(why, 500)})
}

func (d *Dispatcher) reschedule(ctx context.Context, n *model.Notification, at time.Time, why string) error {
	return d.settle(ctx, n, map[string]any{"status": model.NotifyPending, "due_at": at.UTC(), "last_error": model.Truncate(why, 500)})
}

// nextRetry is the retry policy: after attempt (1 for the first), the
// pause before the next one — BackoffBase doubling each time, at most
// BackoffMax — and whether MaxAttempts are spent (giveUp). It is pure; the
// dispatcher spreads the pause (jitter) so that rows failed together do
// not come back together.
func (c Config) nextRetry(attempt int) (pause time.Duration, giveUp bool) {
	pause = c.BackoffBase << max(attempt-1, 0)
	if pause > c.BackoffMax || pause <= 0 { // <= 0: shifted past int64
		pause = c.BackoffMax
	}
	return pause, attempt >= c.MaxAttempts
}

// jitter spreads d over 50%–150%.
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return d
	}
	return d/2 + time.Duration(mrand.Int64N(int64(d)))
}

// retry schedules the next attempt (nextRetry, spread by jitter), or gives
// up after MaxAttempts; an attempt that was not counted (the send never
// left) is retried without counting against them.
func (d *Dispatcher) retry(ctx context.Context, n *model.Notification, why string, counted bool) error {
	pause, giveUp := d.cfg.nextRetry(n.Attempts)
	if counted && giveUp {
		d.m.dead.WithLabelValues(n.Reason, n.Channel).Inc()
		return d.finish(ctx, n, model.NotifyDead, fmt.Sprintf("已尝试 %d 次，放弃：%s", n.Attempts, why))
	}
	delay := jitter(pause)
	d.m.retried.WithLabelValues(n.Reason).Inc()
	return d.settle(ctx, n, map[string]any{"status": model.NotifyFailed, "due_at": d.now().UTC().Add(delay), "last_error": model.Truncate(why, 500)})
}
