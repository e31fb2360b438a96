package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-chi/httprate"
	"github.com/ordershop/ordershop/internal/platform"
	"github.com/ordershop/ordershop/internal/shop"
	"github.com/ordershop/ordershop/pkg/entitycache"
	"github.com/ordershop/ordershop/pkg/eventstore"
)

func wire(app *platform.App, cfg config) error {
	// The owner of each collection.
	owners := map[string]string{
		shop.Customers.Many: cfg.CustomerURL, shop.Products.Many: cfg.ProductURL, shop.Inventories.Many: cfg.InventoryURL,
		shop.Orders.Many: cfg.OrderURL, shop.Billings.Many: cfg.BillingURL,
	}
	r := app.Router
	if cfg.RateLimit > 0 {
		r.Use(rateLimit(cfg.RateLimit, cfg.RateWindow))
	}
	for _, res := range shop.Collections {
		res.Queries(r, app.Cache)
		owner := owners[res.Plural()]
		now, err := proxy(app, owner, "", app.Config.RequestTimeout)
		if err != nil {
			return err
		}
		patient, err := proxy(app, owner, "", cfg.CommandTimeout)
		if err != nil {
			return err
		}
		command := idempotent(app, cfg.CommandTimeout, now, patient)
		for _, p := range res.Paths("") {
			r.Post(p, command)
		}
		for _, p := range res.Paths("/{id}") {
			r.Put(p, command)
			r.Delete(p, command)
		}
	}
	r.Get("/report", report(app.Cache, shop.Collections))
	// Reads only: what else the owners serve is for the services alone.
	for path, target := range map[string]string{"/orders/unbilled": cfg.OrderURL, "/emails": cfg.MsgURL, "/emails/*": cfg.MsgURL} {
		h, err := proxy(app, target, "", app.Config.RequestTimeout)
		if err != nil {
			return err
		}
		r.Get(path, h)
	}
	// The consumers' operator routes, on the admin listener only. The
	// Authorization header goes along: each service checks the token too.
	for path, target := range map[string]string{"/ops/crm": cfg.CRMAdminURL, "/ops/billing": cfg.BillingAdminURL} {
		h, err := proxy(app, target+"/ops", path, app.Config.RequestTimeout) // /ops/crm/stats is crm's /ops/stats
		if err != nil {
			return err
		}
		app.Admin.Handle(path+"/*", h)
	}
	app.Metrics.Streams(platform.AllGroups, func(ctx context.Context) ([]eventstore.StreamInfo, error) {
		// Every group's, also those of a consumer that is down.
		return shop.Domain.Infos(ctx, app.Store)
	})
	return serveDashboard(app, cfg)
}

// rateLimit answers a client address that sent more than limit requests in
// the last window with 429 and Retry-After. The address is the connection's,
// never X-Forwarded-For, which any client can write.
func rateLimit(limit int, window time.Duration) func(http.Handler) http.Handler {
	retry := strconv.Itoa(int(math.Ceil(window.Seconds())))
	return httprate.LimitBy(limit, window, func(r *http.Request) (string, error) { return clientOf(r), nil },
		httprate.WithLimitHandler(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", retry) // whole seconds, at least 1
			platform.WriteError(w, r, platform.Errorf(http.StatusTooManyRequests, "more than %d requests in %v, try again later", limit, window))
		}))
}

// clientOf is the address a request comes from, by which the gateway limits
// clients: the connection's, never X-Forwarded-For, which any client can
// write; an IPv6 client by its /64.
func clientOf(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	return httprate.CanonicalizeIP(host)
}

// proxy forwards requests to a service, without the prefix strip. A service
// that is down, or slower than timeout, is a 503 JSON error, never a hang.
func proxy(app *platform.App, target, strip string, timeout time.Duration) (http.HandlerFunc, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, err
	}
	p := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			pr.SetXForwarded()
			platform.CarryTrace(pr.In.Context(), pr.Out.Header)
		},
		Transport:  platform.Transport(timeout),
		BufferPool: buffers,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				platform.WriteError(w, r, platform.TooLarge(tooBig.Limit))
				return
			}
			platform.WriteError(w, r, fmt.Errorf("%w: %s: %v", platform.ErrUnavailable, target, err))
		},
	}
	h := http.StripPrefix(strip, p)
	return func(w http.ResponseWriter, r *http.Request) {
		// Refused here, before a service is asked; a body without a length
		// is cut at the limit while it is forwarded.
		if r.ContentLength > app.Config.MaxBodyBytes {
			platform.WriteError(w, r, platform.TooLarge(app.Config.MaxBodyBytes))
			return
		}
		h.ServeHTTP(w, r)
	}, nil
}

// buffers lends every proxy its copy buffers: without a pool, ReverseProxy
// makes a new one of 32 KiB per request, most of what the gateway allocates
// on a command.
var buffers = &bufferPool{}

type bufferPool struct{ pool sync.Pool }

func (p *bufferPool) Get() []byte {
	if b, ok := p.pool.Get().(*[]byte); ok {
		return *b
	}
	return make([]byte, 32<<10)
}

func (p *bufferPool) Put(b []byte) { p.pool.Put(&b) }

// report answers GET /report: every collection, by its plural, in two
// round trips in all, whatever their number and size. The keys are in
// order, as when the answer was a map.
func report(cache *entitycache.Cache, collections []platform.Collection) http.HandlerFunc {
	collections = slices.SortedFunc(slices.Values(collections), func(a, b platform.Collection) int {
		return strings.Compare(a.Plural(), b.Plural())
	})
	return func(w http.ResponseWriter, r *http.Request) {
		lists := make([]entitycache.Listing, len(collections))
		for i, res := range collections {
			lists[i] = res.Listing()
		}
		if err := cache.ListAll(r.Context(), lists...); err != nil {
			platform.WriteError(w, r, err)
			return
		}
		fields := make([]platform.Field, len(collections))
		for i, res := range collections {
			fields[i] = platform.Field{Key: res.Plural(), Value: lists[i].Entities()}
		}
		platform.WriteObject(w, r, http.StatusOK, fields)
	}
}
