package notify

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"

	"careloop/model"
)

type metrics struct {
	sent, dead    *prometheus.CounterVec
	undeliverable *prometheus.CounterVec
	retried       *prometheus.CounterVec
	quota         *prometheus.CounterVec
	depth         prometheus.Gauge
}

func newMetrics() *metrics {
	return &metrics{
		sent:          prometheus.NewCounterVec(prometheus.CounterOpts{Name: "careloop_notify_sent_total", Help: "Notifications WeChat accepted, by reason and channel."}, []string{"reason", "channel"}),
		dead:          prometheus.NewCounterVec(prometheus.CounterOpts{Name: "careloop_notify_dead_total", Help: "Notifications given up on."}, []string{"reason", "channel"}),
		undeliverable: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "careloop_notify_undeliverable_total", Help: "Notifications no channel could carry."}, []string{"reason"}),
		retried:       prometheus.NewCounterVec(prometheus.CounterOpts{Name: "careloop_notify_retries_total", Help: "Retries scheduled."}, []string{"reason"}),
		quota:         prometheus.NewCounterVec(prometheus.CounterOpts{Name: "careloop_notify_quota_exhausted_total", Help: "Times a WeChat API hit its daily quota (45009): staff alert."}, []string{"api"}),
		depth:         prometheus.NewGauge(prometheus.GaugeOpts{Name: "careloop_notify_queue_depth", Help: "Notifications due and not yet sent."}),
	}
}

// Collectors are the dispatcher's Prometheus metrics.
func (d *Dispatcher) Collectors() []prometheus.Collector {
	return []prometheus.Collector{d.m.sent, d.m.dead, d.m.undeliverable, d.m.retried, d.m.quota, d.m.depth}
}

func (m *metrics) observeDepth(ctx context.Context, d *Dispatcher) {
	var n int64
	if err := d.db.Conn(ctx).Model(&model.Notification{}).
		Where("status IN ? AND due_at <= ?", []string{model.NotifyPending, model.NotifyFailed}, d.now().UTC()).Count(&n).Error; err == nil {
		m.depth.Set(float64(n))
	}
}
