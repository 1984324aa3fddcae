package service

import (
	"context"
	"time"

	"careloop/model"
	"careloop/notify"
)

// Holds reports the WeChat APIs the dispatcher is holding back, and until
// when (a daily quota reached, a minute limit hit).
type Holds interface {
	Holds(ctx context.Context) map[string]time.Time
}

// Notices is the staff side of the outbox: what was sent to whom, what is
// held, a retry or cancel by hand.
type Notices struct {
	db    *model.DB
	out   *notify.Outbox
	holds Holds
}

// NewNotices returns the staff notification use cases.
func NewNotices(db *model.DB, out *notify.Outbox, holds Holds) *Notices {
	return &Notices{db: db, out: out, holds: holds}
}

// NoticePage is one page of the outbox with its counts by status and the
// APIs held back now.
type NoticePage struct {
	Rows   []model.Notification
	Next   string
	Counts map[string]int64
	Held   map[string]time.Time
}

// Reasons lists the kinds of notice careloop sends, with the WeChat
// channels and templates each goes through (set in the configuration file).
func (s *Notices) Reasons(ctx context.Context, by Principal) ([]notify.Reason, error) {
	if err := by.must(ActNotificationsRead); err != nil {
		return nil, err
	}
	return s.out.Reasons(), nil
}

// List returns the outbox, newest first.
func (s *Notices) List(ctx context.Context, by Principal, f notify.Filter) (*NoticePage, error) {
	if err := by.must(ActNotificationsRead); err != nil {
		return nil, err
	}
	rows, next, counts, err := s.out.List(ctx, f)
	if err != nil {
		return nil, err
	}
	return &NoticePage{Rows: rows, Next: next, Counts: counts, Held: s.holds.Holds(ctx)}, nil
}

// Retry sends a dead or failed notification again, and returns it.
func (s *Notices) Retry(ctx context.Context, by Principal, id uint64) (*model.Notification, error) {
	if err := by.must(ActNotificationsFix); err != nil {
		return nil, err
	}
	if err := s.out.Retry(ctx, id); err != nil {
		return nil, err
	}
	return s.out.Get(ctx, id)
}

// Cancel stops a notification that has not gone out, and returns it.
func (s *Notices) Cancel(ctx context.Context, by Principal, id uint64, why string) (*model.Notification, error) {
	if err := by.must(ActNotificationsFix); err != nil {
		return nil, err
	}
	if err := s.out.Cancel(ctx, id, why); err != nil {
		return nil, err
	}
	return s.out.Get(ctx, id)
}
