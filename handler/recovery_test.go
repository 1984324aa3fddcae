package handler

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/go-sql-driver/mysql"
)

// A panic is answered 500 with the standard body and no internals; the
// stack goes to the log.
func TestRecoveryHidesInternals(t *testing.T) {
	var logBuf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logBuf, nil))
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.Use(requestID(), recovery(log), errorMiddleware(log))
	r.GET("/boom", func(c *gin.Context) { panic("secret table patients_x exploded") })
	r.GET("/err", func(c *gin.Context) { fail(c, errPlain("dial tcp 10.0.0.5:3306: refused")) })
	for _, path := range []string{"/boom", "/err"} {
		rec := httptest.NewRecorder()
		r.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		var body ErrorBody
		_ = json.Unmarshal(rec.Body.Bytes(), &body)
		if rec.Code != 500 || body.Error.Code != "internal" || body.Error.Message == "" {
			t.Fatalf("%s: %d %s", path, rec.Code, rec.Body.String())
		}
		if strings.Contains(rec.Body.String(), "patients_x") || strings.Contains(rec.Body.String(), "10.0.0.5") {
			t.Fatalf("%s leaks internals: %s", path, rec.Body.String())
		}
	}
	if !strings.Contains(logBuf.String(), "patients_x") || !strings.Contains(logBuf.String(), "10.0.0.5") {
		t.Fatal("the details must reach the log")
	}
}

type errPlain string

func (e errPlain) Error() string { return string(e) }

// A database that refuses connections is "try again", not a bug.
func TestDatabaseUnavailableIs503(t *testing.T) {
	log := slog.New(slog.NewJSONHandler(&bytes.Buffer{}, nil))
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.Use(errorMiddleware(log))
	r.GET("/x", func(c *gin.Context) {
		fail(c, fmt.Errorf("book slot 7: %w", &mysql.MySQLError{Number: 1040, Message: "Too many connections"}))
	})
	rec := httptest.NewRecorder()
	r.ServeHTTP(rec, httptest.NewRequest("GET", "/x", nil))
	if rec.Code != 503 || rec.Header().Get("Retry-After") == "" || !strings.Contains(rec.Body.String(), `"unavailable"`) {
		t.Fatalf("%d %s", rec.Code, rec.Body.String())
	}
}
