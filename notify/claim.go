package notify

import (
	"context"
	"crypto/rand"
	"encoding/hex"

	"gorm.io/gorm/clause"

	"careloop/model"
)

func newToken() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// unfinished are the statuses of a row that may still be sent.
var unfinished = []string{model.NotifyPending, model.NotifyClaimed, model.NotifySending, model.NotifyFailed}

// claim takes up to n due rows for this worker under a lease. On MySQL the
// candidates are locked with SKIP LOCKED, so concurrent workers take
// disjoint rows without waiting on each other; SQLite has one writer.
func (d *Dispatcher) claim(ctx context.Context, n int) ([]model.Notification, error) {
	now := d.now().UTC()
	token := newToken()
	var rows []model.Notification
	err := d.db.InTx(ctx, func(ctx context.Context) error {
		// One status at a time, so that the (status, due_at) index yields
		// rows in order and only the rows returned are locked; with
		// "status IN (…) ORDER BY due_at" MySQL sorts, locking every
		// candidate, and the other workers' SKIP LOCKED finds nothing.
		for _, status := range []string{model.NotifyPending, model.NotifyFailed} {
			if len(rows) >= n {
				break
			}
			// A row with an order key waits for every earlier row of its key
			// to finish: one at a time, in the order written, across retries.
			// (On MySQL the subquery is a plain consistent read, not locked.)
			q := d.db.Conn(ctx).Where("status = ? AND due_at <= ?", status, now).
				Where("(order_key = '' OR order_key IS NULL OR NOT EXISTS (SELECT 1 FROM notifications prev WHERE prev.order_key = notifications.order_key AND prev.id < notifications.id AND prev.status IN ?))",
					unfinished).
				Order("due_at").Limit(n - len(rows))
			if d.db.Dialect() == "mysql" {
				q = q.Clauses(clause.Locking{Strength: "UPDATE", Options: "SKIP LOCKED"})
			}
			var more []model.Notification
			if err := q.Find(&more).Error; err != nil {
				return err
			}
			rows = append(rows, more...)
		}
		if len(rows) == 0 {
			return nil
		}
		ids := make([]uint64, len(rows))
		lease := now.Add(d.cfg.Lease)
		for i := range rows {
			ids[i] = rows[i].ID
			rows[i].Status, rows[i].ClaimToken, rows[i].LeaseUntil = model.NotifyClaimed, token, &lease
		}
		return d.db.Conn(ctx).Model(&model.Notification{}).Where("id IN ?", ids).
			Updates(map[string]any{"status": model.NotifyClaimed, "claim_token": token, "lease_until": lease}).Error
	})
	if err != nil {
		return nil, err
	}
	return rows, err
}

// release hands claimed rows back untouched.
func (d *Dispatcher) release(ctx context.Context, rows []model.Notification) {
	for _, n := range rows {
		d.bestEffort("release claim", d.db.Conn(ctx).Model(&model.Notification{}).Where("id = ? AND claim_token = ? AND status = ?", n.ID, n.ClaimToken, model.NotifyClaimed).
			Updates(map[string]any{"status": model.NotifyPending, "claim_token": "", "lease_until": nil}))
	}
}

// sweep recovers rows whose worker vanished: a claim never started goes
// back to pending; a send in flight has an unknown outcome, so it is resent
// only on the template channel, whose client_msg_id makes a resend harmless.
func (d *Dispatcher) sweep(ctx context.Context) {
	now := d.now().UTC()
	db := d.db.Conn(ctx)
	if res := db.Model(&model.Notification{}).Where("status = ? AND lease_until < ?", model.NotifyClaimed, now).
		Updates(map[string]any{"status": model.NotifyPending, "claim_token": "", "lease_until": nil}); d.bestEffort("sweep claims", res) && res.RowsAffected > 0 {
		d.log.Info("recovered abandoned claims", "count", res.RowsAffected)
	}
	d.bestEffort("sweep template sends", db.Model(&model.Notification{}).Where("status = ? AND lease_until < ? AND channel = ?", model.NotifySending, now, ChannelOATemplate).
		Updates(map[string]any{"status": model.NotifyPending, "claim_token": "", "lease_until": nil,
			"last_error": "发送中工作进程中断；以相同 client_msg_id 重发"}))
	d.bestEffort("sweep other sends", db.Model(&model.Notification{}).Where("status = ? AND lease_until < ? AND channel <> ?", model.NotifySending, now, ChannelOATemplate).
		Updates(map[string]any{"status": model.NotifyDead, "claim_token": "", "lease_until": nil,
			"last_error": "发送中工作进程中断，结果未知；为免重复不再重发（如需可手动重试）"}))
}
