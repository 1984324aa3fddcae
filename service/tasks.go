package service

import (
	"context"
	"fmt"
	"time"

	"gorm.io/gorm/clause"

	"careloop/model"
)

// Tasks are the work items careloop hands to a role: a critical value for
// the doctors, a follow-up call for the front desk, a complaint step.
type Tasks struct {
	db  *model.DB
	now func() time.Time
}

// NewTasks returns the task use cases.
func NewTasks(db *model.DB, now func() time.Time) *Tasks {
	if now == nil {
		now = time.Now
	}
	return &Tasks{db: db, now: now}
}

// ErrNotYourTask: a task for another role.
var ErrNotYourTask = model.NewError(model.KindForbidden, "not_your_task", "该任务属于其他岗位，您不能处理")

// Open lists the open tasks of the caller's role (every role's, for an
// admin), urgent first.
func (s *Tasks) Open(ctx context.Context, by Principal) ([]model.Task, error) {
	if err := by.must(ActTasksWork); err != nil {
		return nil, err
	}
	q := s.db.Conn(ctx).Where("status = ? AND retained_until IS NULL", "open")
	if by.Role != model.RoleAdmin {
		q = q.Where("role = ?", by.Role)
	}
	var out []model.Task
	return out, q.Order("urgent DESC, id").Limit(500).Find(&out).Error
}

// Complete marks an open task done by the caller: only the task's role, or
// an admin, may close it.
func (s *Tasks) Complete(ctx context.Context, by Principal, id uint64) (*model.Task, error) {
	if err := by.must(ActTasksWork); err != nil {
		return nil, err
	}
	var t model.Task
	err := s.db.InTx(ctx, func(ctx context.Context) error {
		if err := s.db.Conn(ctx).Clauses(clause.Locking{Strength: "UPDATE"}).Where("id = ? AND retained_until IS NULL", id).Take(&t).Error; err != nil {
			return model.NotFound(err)
		}
		if by.Role != model.RoleAdmin && by.Role != t.Role {
			return ErrNotYourTask
		}
		now := s.now().UTC()
		res := s.db.Conn(ctx).Model(&model.Task{}).Where("id = ? AND status = ?", id, "open").
			Updates(map[string]any{"status": "done", "done_at": now, "assigned_to": by.ID})
		if res.Error != nil {
			return fmt.Errorf("complete task %d: %w", id, res.Error)
		}
		if res.RowsAffected == 0 { // done already, perhaps a moment ago by a colleague
			return model.NewError(model.KindConflict, "task_done", "该任务已完成")
		}
		t.Status, t.DoneAt, t.AssignedTo = "done", &now, by.ID
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &t, nil
}
