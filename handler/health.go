package handler

import (
	"context"
	"crypto/subtle"
	"log/slog"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"careloop/model"
)

// Check is one readiness check: the database, Redis.
type Check struct {
	Name string
	Ping func(ctx context.Context) error
}

type health struct {
	checks []Check
	log    *slog.Logger
}

// Register mounts /healthz and /readyz.
func (h health) Register(r gin.IRoutes) {
	r.GET("/healthz", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ok"}) })
	r.GET("/readyz", h.ready)
}

func (h health) ready(c *gin.Context) {
	results := gin.H{}
	status := http.StatusOK
	for _, chk := range h.checks {
		ctx, cancel := context.WithTimeout(c.Request.Context(), time.Second)
		err := chk.Ping(ctx)
		cancel()
		if err != nil {
			status = http.StatusServiceUnavailable
			results[chk.Name] = "unavailable"
			h.log.Warn("readiness check failed", "check", chk.Name, "err", err)
			continue
		}
		results[chk.Name] = "ok"
	}
	word := "ok"
	if status != http.StatusOK {
		word = "unavailable"
	}
	c.JSON(status, gin.H{"status": word, "checks": results})
}

// metricsHandler serves the Prometheus metrics; with a token, only to a
// scraper that presents it (the metrics are not public in production).
func metricsHandler(m *metrics, token string) gin.HandlerFunc {
	h := gin.WrapH(promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	if token == "" {
		return h
	}
	want := []byte("Bearer " + token)
	return func(c *gin.Context) {
		if subtle.ConstantTimeCompare([]byte(c.GetHeader("Authorization")), want) != 1 {
			c.Header("WWW-Authenticate", `Bearer realm="metrics"`)
			fail(c, model.ErrUnauthorized.WithMessage("指标需要令牌"))
			return
		}
		h(c)
	}
}
