package service

import (
	"context"

	"careloop/model"
)

// Events carry one use case's facts to the use cases that react to them,
// in the same transaction. The publisher calls the fact's method
// (bookingCompleted); a reactor subscribes in its constructor
// (OnBookingCompleted), so a reader finds the link from either side with
// one search. Subscriptions are made while wiring, before any request.
type Events struct {
	completed []func(ctx context.Context, b *model.Booking) error
}

// NewEvents returns an empty set of subscriptions.
func NewEvents() *Events { return &Events{} }

// OnBookingCompleted subscribes fn to "a checkup was completed" (points for
// it, the satisfaction survey). fn runs in the completing transaction: its
// error undoes the completion.
func (e *Events) OnBookingCompleted(fn func(ctx context.Context, b *model.Booking) error) {
	e.completed = append(e.completed, fn)
}

// bookingCompleted tells the subscribers, in subscription order.
func (e *Events) bookingCompleted(ctx context.Context, b *model.Booking) error {
	if e == nil {
		return nil
	}
	for _, fn := range e.completed {
		if err := fn(ctx, b); err != nil {
			return err
		}
	}
	return nil
}
