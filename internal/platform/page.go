package platform

import (
	"net/http"
	"net/url"
	"strconv"

	"github.com/ordershop/ordershop/pkg/entitycache"
)

// MaxPage is the most entities a page holds.
const MaxPage = 1000

// PageOf reads the page a list request asks for: ?limit=N&after=<id>, N
// from 1 to MaxPage. Without a limit it is the whole list, as the original
// API answered.
func PageOf(r *http.Request) (entitycache.Page, error) {
	q := r.URL.Query()
	var p entitycache.Page
	if !q.Has("limit") {
		if q.Has("after") {
			return p, Errorf(http.StatusBadRequest, "after needs a limit")
		}
		return p, nil
	}
	n, err := strconv.Atoi(q.Get("limit"))
	if err != nil || n < 1 || n > MaxPage {
		return p, Errorf(http.StatusBadRequest, "limit must be an integer from 1 to %d, not %q", MaxPage, q.Get("limit"))
	}
	p.Limit = n
	if q.Has("after") {
		p.After, err = CheckUUID("after", q.Get("after"))
	}
	return p, err
}

// List serves a list route from list, which answers a page and the After of
// the next one ("" after the last). While there may be more, the answer has
// a Link to the next page (RFC 8288): this request's own path and query with
// the next after. The link is relative, so that it holds behind the gateway.
func List[T any](list func(r *http.Request, p entitycache.Page) ([]T, string, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		Handle(func(r *http.Request) (any, error) {
			p, err := PageOf(r)
			if err != nil {
				return nil, err
			}
			page, next, err := list(r, p)
			if err != nil {
				return nil, err
			}
			if next != "" {
				q := r.URL.Query()
				q.Set("after", next)
				w.Header().Set("Link", "<"+(&url.URL{Path: r.URL.Path, RawQuery: q.Encode()}).String()+`>; rel="next"`)
			}
			return page, nil
		})(w, r)
	}
}
