// Package service holds careloop's use cases: identity, booking, reports,
// points, surveys, chat and notifications, each owning its transactions. It
// declares the small interfaces it needs (a WeChat client, a clock, a rate
// limiter) and main wires concrete types into them.
package service

import (
	"context"

	"careloop/model"
)

// Principal is who is asking: a patient or a staff member.
type Principal struct {
	Kind      string // model.SubjectPatient or model.SubjectStaff
	ID        uint64
	Role      string // staff role; empty for patients
	SessionID string
	IP        string // where the request came from, for the audit log
}

// IsPatient reports whether p is a patient.
func (p Principal) IsPatient() bool { return p.Kind == model.SubjectPatient }

// IsStaff reports whether p is a staff member.
func (p Principal) IsStaff() bool { return p.Kind == model.SubjectStaff }

type principalKey struct{}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the principal in ctx, if any.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}
