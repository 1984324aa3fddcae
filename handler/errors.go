package handler

import (
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"careloop/model"
)

// statusOf maps an error kind to its HTTP status.
func statusOf(k model.Kind) int {
	switch k {
	case model.KindInvalid:
		return http.StatusBadRequest
	case model.KindUnauthorized:
		return http.StatusUnauthorized
	case model.KindForbidden:
		return http.StatusForbidden
	case model.KindNotFound:
		return http.StatusNotFound
	case model.KindConflict:
		return http.StatusConflict
	case model.KindRule:
		return http.StatusUnprocessableEntity
	case model.KindTooMany:
		return http.StatusTooManyRequests
	case model.KindUnavailable:
		return http.StatusServiceUnavailable
	case model.KindTooLarge:
		return http.StatusRequestEntityTooLarge
	default:
		return http.StatusInternalServerError
	}
}

// ErrorBody is the JSON body of every error answer.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is a stable code for programs and a Chinese message for people.
type ErrorDetail struct {
	Code    string         `json:"code"`
	Message string         `json:"message"`
	Details map[string]any `json:"details,omitempty"`
}

// errorMiddleware renders the last error a handler recorded with c.Error.
// Known errors become their status and code; anything else is a 500 whose
// details go to the log only.
func errorMiddleware(log *slog.Logger) gin.HandlerFunc {
	return func(c *gin.Context) {
		c.Next()
		if len(c.Errors) == 0 || c.Writer.Written() {
			return
		}
		err := c.Errors.Last().Err
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			err = model.ErrTooLarge
		}
		e, ok := model.AsError(err)
		if !ok {
			e = model.ErrInternal
			if model.IsUnavailable(err) {
				e = model.ErrUnavailable
			}
		}
		status := statusOf(e.Kind)
		if status == http.StatusServiceUnavailable {
			c.Header("Retry-After", "1")
		}
		if status >= 500 {
			log.ErrorContext(c.Request.Context(), "request failed", "err", err.Error(), "route", c.FullPath(), "request_id", c.GetString(requestIDKey))
		}
		c.JSON(status, ErrorBody{Error: ErrorDetail{Code: e.Code, Message: e.Message, Details: e.Details}})
	}
}

// fail records err for errorMiddleware and stops the chain.
func fail(c *gin.Context, err error) {
	_ = c.Error(err)
	c.Abort()
}

// idAndJSON reads the :id path parameter and the JSON body (answering 404 or
// 400 itself when either is wrong).
func idAndJSON[T any](c *gin.Context) (uint64, T, bool) {
	var req T
	id, ok := idParam(c)
	if !ok || !bindJSON(c, &req) {
		return 0, req, false
	}
	return id, req, true
}

// queryTimes reads the optional "from" and "to" query parameters (RFC 3339)
// into from and to, or records a 400 and returns false.
func queryTimes(c *gin.Context, from, to *time.Time) bool {
	for _, q := range []struct {
		key string
		dst *time.Time
	}{{"from", from}, {"to", to}} {
		if v := c.Query(q.key); v != "" {
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				fail(c, model.ErrInvalid.WithMessage("%s 应为 RFC 3339 时间，例如 2026-11-24T00:00:00+08:00", q.key))
				return false
			}
			*q.dst = t
		}
	}
	return true
}

// noContent answers 204, or with err.
func noContent(c *gin.Context, err error) {
	if err != nil {
		fail(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

// renderOne answers with dto(v) and status, or with err.
func renderOne[T, D any](c *gin.Context, status int, v T, err error, dto func(T) D) {
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(status, dto(v))
}

// renderList answers a whole list as {"items": [...], "next_cursor": ""},
// each row through dto, or records err.
func renderList[T, D any](c *gin.Context, rows []T, err error, dto func(*T) D) {
	renderPage(c, rows, "", err, dto)
}

// renderPage answers one page of a list as {"items": [...], "next_cursor":
// next}, each row through dto, or records err.
func renderPage[T, D any](c *gin.Context, rows []T, next string, err error, dto func(*T) D) {
	if err != nil {
		fail(c, err)
		return
	}
	items := make([]D, 0, len(rows))
	for i := range rows {
		items = append(items, dto(&rows[i]))
	}
	c.JSON(http.StatusOK, gin.H{"items": items, "next_cursor": next})
}

// queryLimit reads the optional page size ("limit": 1–100, 0 when absent)
// or records a 422 naming the field.
func queryLimit(c *gin.Context) (int, bool) {
	raw := c.Query("limit")
	if raw == "" {
		return 0, true
	}
	n, err := strconv.ParseInt(raw, 10, 64)
	if err == nil {
		err = model.BoundPageSize.Check(n)
	} else {
		err = model.BoundPageSize.Check(-1)
	}
	if err != nil {
		fail(c, err)
		return 0, false
	}
	return int(n), true
}
