package handler

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus/promhttp"
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

func metricsHandler(m *metrics) gin.HandlerFunc {
	h := promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
	return gin.WrapH(h)
}
