package notify

import (
	"context"
	"encoding/base64"
	"fmt"
	"strconv"

	"gorm.io/gorm"

	"careloop/model"
)

// Filter narrows the staff's notification list.
type Filter struct {
	Status    string
	Reason    string
	PatientID uint64
	Cursor    string
	Limit     int
}

// List returns notifications newest first, the next cursor, and counts by
// status for the same reason/patient filter.
func (o *Outbox) List(ctx context.Context, f Filter) ([]model.Notification, string, map[string]int64, error) {
	base := func() *gorm.DB { return o.db.Conn(ctx).Model(&model.Notification{}) }
	q := base()
	cq := base()
	if f.Reason != "" {
		q, cq = q.Where("reason = ?", f.Reason), cq.Where("reason = ?", f.Reason)
	}
	if f.PatientID != 0 {
		q, cq = q.Where("patient_id = ?", f.PatientID), cq.Where("patient_id = ?", f.PatientID)
	}
	if f.Status != "" {
		q = q.Where("status = ?", f.Status)
	}
	limit := f.Limit
	if limit <= 0 || limit > 100 {
		limit = 20
	}
	if f.Cursor != "" {
		raw, err := base64.RawURLEncoding.DecodeString(f.Cursor)
		after, err2 := strconv.ParseUint(string(raw), 10, 64)
		if err != nil || err2 != nil {
			return nil, "", nil, model.NewError(model.KindInvalid, "invalid_cursor", "分页参数无效")
		}
		q = q.Where("id < ?", after)
	}
	var rows []model.Notification
	if err := q.Order("id DESC").Limit(limit + 1).Find(&rows).Error; err != nil {
		return nil, "", nil, err
	}
	next := ""
	if len(rows) > limit {
		rows = rows[:limit]
		next = base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatUint(rows[limit-1].ID, 10)))
	}
	var counts []struct {
		Status string
		N      int64
	}
	if err := cq.Select("status, COUNT(*) AS n").Group("status").Scan(&counts).Error; err != nil {
		return nil, "", nil, err
	}
	byStatus := map[string]int64{}
	for _, c := range counts {
		byStatus[c.Status] = c.N
	}
	return rows, next, byStatus, nil
}

// Errors of staff actions on notifications.
var (
	ErrNotRetryable   = model.NewError(model.KindConflict, "not_retryable", "只有失败、放弃或无法送达的通知可以重发")
	ErrNotCancellable = model.NewError(model.KindConflict, "not_cancellable", "该通知已发送或正在发送，无法取消")
)

// Retry puts a dead, failed or undeliverable notification back in the queue
// now, with a fresh attempt count.
func (o *Outbox) Retry(ctx context.Context, id uint64) error {
	res := o.db.Conn(ctx).Model(&model.Notification{}).
		Where("id = ? AND status IN ?", id, []string{model.NotifyDead, model.NotifyFailed, model.NotifyUndeliverable}).
		Updates(map[string]any{"status": model.NotifyPending, "due_at": o.now().UTC(), "attempts": 0})
	if res.Error != nil {
		return res.Error
	}
	if res.RowsAffected == 0 {
		return o.missingOr(ctx, id, ErrNotRetryable)
	}
	o.Wake(ctx)
	return nil
}

// Cancel stops a notification that has not been sent.
func (o *Outbox) Cancel(ctx context.Context, id uint64, why string) error {
	res := o.db.Conn(ctx).Model(&model.Notification{}).
		Where("id = ? AND status IN ?", id, []string{model.NotifyPending, model.NotifyFailed, model.NotifyUndeliverable, model.NotifyDead}).
		Updates(map[string]any{"status": model.NotifyCancelled, "last_error": model.Truncate("工作人员取消："+why, 500)})
	if res.Error != nil {
		return res.Error
	}
	if res.RowsAffected == 0 {
		return o.missingOr(ctx, id, ErrNotCancellable)
	}
	return nil
}

func (o *Outbox) missingOr(ctx context.Context, id uint64, err error) error {
	n, cerr := model.Count(o.db.Conn(ctx).Model(&model.Notification{}).Where("id = ?", id))
	if cerr != nil {
		return fmt.Errorf("find notification %d: %w", id, cerr)
	}
	if n == 0 {
		return model.ErrNotFound
	}
	return err
}

// Get loads one notification.
func (o *Outbox) Get(ctx context.Context, id uint64) (*model.Notification, error) {
	var n model.Notification
	if err := o.db.Conn(ctx).Where("id = ?", id).Take(&n).Error; err != nil {
		return nil, fmt.Errorf("load notification %d: %w", id, model.NotFound(err))
	}
	return &n, nil
}
