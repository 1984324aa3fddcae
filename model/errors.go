// Package model holds careloop's GORM models, its sentinel errors and the small
// state machines that handlers and services share.
package model

import (
	"errors"
	"fmt"
)

// Kind says what sort of failure an Error is; the HTTP layer maps each kind to
// one status code.
type Kind int

// The kinds of failure, each with the HTTP status it becomes.
const (
	KindInternal     Kind = iota // 500: a bug or an unavailable dependency; details are logged, never shown
	KindInvalid                  // 400: the request is malformed
	KindUnauthorized             // 401: no, bad, expired or revoked credentials
	KindForbidden                // 403: authenticated, but the role may not do this
	KindNotFound                 // 404: absent, or not the caller's to see
	KindConflict                 // 409: the state of the world forbids it (full slot, duplicate)
	KindRule                     // 422: well-formed but breaks a business rule
	KindTooMany                  // 429: rate-limited; retry later
	KindUnavailable              // 503: a dependency is down; retry later
	KindTooLarge                 // 413: the body is larger than allowed
)

// Error is a failure a client can act on: a stable machine-readable Code and a
// Message in Simplified Chinese fit to show a patient or staff member.
type Error struct {
	Kind    Kind
	Code    string
	Message string
	// Details are machine-readable facts of this failure (a count, a field).
	Details map[string]any
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Is makes errors.Is match two *Error values by Code, so a copy made with
// WithMessage still matches its sentinel.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// WithMessage returns a copy of e that keeps its kind and code but says msg.
func (e *Error) WithMessage(format string, args ...any) *Error {
	return &Error{Kind: e.Kind, Code: e.Code, Message: fmt.Sprintf(format, args...)}
}

// WithDetails returns a copy of e carrying details.
func (e *Error) WithDetails(d map[string]any) *Error {
	return &Error{Kind: e.Kind, Code: e.Code, Message: e.Message, Details: d}
}

// NewError makes an Error of the given kind.
func NewError(kind Kind, code, message string) *Error {
	return &Error{Kind: kind, Code: code, Message: message}
}

// Generic sentinels. Use-case specific ones live beside their use case.
var (
	ErrInternal     = NewError(KindInternal, "internal", "服务器内部错误，请稍后再试")
	ErrInvalid      = NewError(KindInvalid, "invalid_request", "请求格式不正确")
	ErrUnauthorized = NewError(KindUnauthorized, "unauthorized", "请先登录")
	ErrForbidden    = NewError(KindForbidden, "forbidden", "您没有权限执行此操作")
	ErrNotFound     = NewError(KindNotFound, "not_found", "未找到相关记录")
	ErrConflict     = NewError(KindConflict, "conflict", "数据已被修改，请刷新后重试")
	ErrTooMany      = NewError(KindTooMany, "rate_limited", "操作过于频繁，请稍后再试")
	ErrUnavailable  = NewError(KindUnavailable, "unavailable", "服务暂时不可用，请稍后再试")
	ErrTooLarge     = NewError(KindTooLarge, "body_too_large", "请求内容过大")
)

// AsError finds the *Error in err's chain, if any.
func AsError(err error) (*Error, bool) {
	var e *Error
	if errors.As(err, &e) {
		return e, true
	}
	return nil, false
}
