package platform

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/ordershop/ordershop/pkg/eventstore"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are an app's Prometheus metrics, served on its admin listener at
// /metrics. Each app has a registry of its own, so that several apps in one
// process (tests) do not share counters; every series carries the label
// service.
type Metrics struct {
	Registry *prometheus.Registry
	reg      prometheus.Registerer // Registry, adding the service label

	requests        *prometheus.HistogramVec
	appended        *prometheus.CounterVec
	handled         *prometheus.CounterVec
	handlerDuration *prometheus.HistogramVec
}

// Outcomes of a handled event: ok (also an event the handler skipped, as
// it is acked), error (a failed delivery, delivered again later), and
// dead_lettered, counted once per event, beside its failed deliveries.
const (
	outcomeOK           = "ok"
	outcomeError        = "error"
	outcomeDeadLettered = "dead_lettered"
)

func newMetrics(service string) *Metrics {
	m := &Metrics{Registry: prometheus.NewRegistry()}
	m.reg = prometheus.WrapRegistererWith(prometheus.Labels{"service": service}, m.Registry)
	m.requests = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "ordershop_http_request_duration_seconds",
		Help: "Time to answer an HTTP request, by chi route pattern, method and status code.",
	}, []string{"route", "method", "code"})
	m.appended = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ordershop_events_appended_total",
		Help: "Events appended to a stream by this service.",
	}, []string{"stream"})
	m.handled = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ordershop_events_handled_total",
		Help: "Deliveries of events to a consumer group's handler by outcome (ok, error), and events dead-lettered (dead_lettered).",
	}, []string{"stream", "group", "outcome"})
	m.handlerDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "ordershop_event_handler_duration_seconds",
		Help: "Time a consumer group's handler took for one event.",
	}, []string{"stream", "group"})
	m.reg.MustRegister(m.requests, m.appended, m.handled, m.handlerDuration,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Register adds a service's own metrics, which carry the label service too.
func (m *Metrics) Register(cs ...prometheus.Collector) { m.reg.MustRegister(cs...) }

// handler serves the metrics in the Prometheus text format. A collector that
// fails (Redis away) leaves its series out; the others are served.
func (m *Metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

func (m *Metrics) request(route, method string, status int, took time.Duration) {
	if route == "" {
		route = "unmatched" // a 404 of no route: paths would be unbounded
	}
	m.requests.WithLabelValues(route, method, statusCode(status)).Observe(took.Seconds())
}

// statusCode is the label of a status code: one of statusCodes, made once,
// as strconv.Itoa makes a string anew for every number from 100 up.
func statusCode(status int) string {
	if status >= 0 && status < len(statusCodes) {
		return statusCodes[status]
	}
	return strconv.Itoa(status)
}

var statusCodes = func() (codes [600]string) {
	for i := range codes {
		codes[i] = strconv.Itoa(i)
	}
	return codes
}()

func (m *Metrics) eventsAppended(streamKey string, n int) {
	m.appended.WithLabelValues(streamKey).Add(float64(n))
}

// handling measures each event a consumer group handles, by the stream the
// consumer read it from.
func (m *Metrics) handling(group string) eventstore.Middleware {
	return func(next eventstore.Handler) eventstore.Handler {
		return func(ctx context.Context, e eventstore.Event) error {
			start := time.Now()
			err := next(ctx, e)
			stream := eventstore.StreamOf(ctx)
			m.handlerDuration.WithLabelValues(stream, group).Observe(time.Since(start).Seconds())
			outcome := outcomeOK
			if err != nil && !errors.Is(err, eventstore.ErrSkip) {
				outcome = outcomeError
			}
			m.handled.WithLabelValues(stream, group, outcome).Inc()
			return err
		}
	}
}

func (m *Metrics) deadLettered(group string) func(streamKey string) {
	return func(streamKey string) { m.handled.WithLabelValues(streamKey, group, outcomeDeadLettered).Inc() }
}

// Streams has each scrape report the streams that infos reads: their
// length, and for group its lag, pending entries and dead letters, or for
// every group with AllGroups. They are read when Prometheus asks, never
// polled. A lag Redis cannot tell (-1) is left out.
// AllGroups has Streams report every group: what the gateway does, so that
// the lag of a consumer that is down is still reported.
const AllGroups = "*"

func (m *Metrics) Streams(group string, infos func(context.Context) ([]eventstore.StreamInfo, error)) {
	m.reg.MustRegister(&streamCollector{group: group, infos: infos})
}

var (
	streamLength = prometheus.NewDesc("ordershop_stream_length",
		"Entries in a stream, read at scrape time.", []string{"stream"}, nil)
	groupLag = prometheus.NewDesc("ordershop_consumer_group_lag",
		"Entries of a stream a consumer group has yet to read (XINFO GROUPS lag), read at scrape time.", []string{"stream", "group"}, nil)
	groupPending = prometheus.NewDesc("ordershop_consumer_group_pending",
		"Entries a consumer group was delivered and has not acked, read at scrape time.", []string{"stream", "group"}, nil)
	deadLetters = prometheus.NewDesc("ordershop_dead_letters",
		"Entries in a consumer group's dead-letter stream, read at scrape time.", []string{"stream", "group"}, nil)
)

type streamCollector struct {
	group string
	infos func(context.Context) ([]eventstore.StreamInfo, error)
}

func (c *streamCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- streamLength
	ch <- groupLag
	ch <- groupPending
	ch <- deadLetters
}

func (c *streamCollector) Collect(ch chan<- prometheus.Metric) {
	// Within Prometheus's default scrape timeout of 10s.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	infos, err := c.infos(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(streamLength, err)
		return
	}
	for _, s := range infos {
		ch <- prometheus.MustNewConstMetric(streamLength, prometheus.GaugeValue, float64(s.Length), s.Stream)
		for _, g := range s.Groups {
			if c.group != AllGroups && g.Name != c.group {
				continue // the other groups' own services report them
			}
			if g.Lag >= 0 {
				ch <- prometheus.MustNewConstMetric(groupLag, prometheus.GaugeValue, float64(g.Lag), s.Stream, g.Name)
			}
			ch <- prometheus.MustNewConstMetric(groupPending, prometheus.GaugeValue, float64(g.Pending), s.Stream, g.Name)
			ch <- prometheus.MustNewConstMetric(deadLetters, prometheus.GaugeValue, float64(g.DeadLetters), s.Stream, g.Name)
		}
	}
}
