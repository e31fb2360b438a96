package platformtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// TypedBody is a body sent as it is with a Content-Type of its own.
type TypedBody struct{ ContentType, Body string }

// Typed is a body with a Content-Type other than application/json ("" sends
// none), e.g. the text/plain POST that any web page can make.
func Typed(contentType, body string) TypedBody { return TypedBody{contentType, body} }

// Send sends a request with a JSON body (a string or []byte is sent as it
// is) and answers the status and the body. It returns its error instead of
// failing the test, so that goroutines other than the test's may call it.
// It uses http.DefaultClient: a test against slow servers sets its timeout.
func Send(method, url string, body any) (int, []byte, error) {
	status, _, data, err := SendWith(method, url, body, nil)
	return status, data, err
}

// SendWith is Send with request headers (If-Match …) that also answers the
// response's headers (ETag …).
func SendWith(method, url string, body any, header http.Header) (int, http.Header, []byte, error) {
	var r io.Reader
	contentType := "application/json"
	switch b := body.(type) {
	case nil:
	case TypedBody:
		r, contentType = strings.NewReader(b.Body), b.ContentType
	case string:
		r = strings.NewReader(b)
	case []byte:
		r = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			return 0, nil, nil, fmt.Errorf("%s %s: %w", method, url, err)
		}
		r = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		return 0, nil, nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, nil, err // names the method and the URL
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("%s %s: reading the answer: %w", method, url, err)
	}
	return resp.StatusCode, resp.Header, data, nil
}

// Do is Send for the test's goroutine: an error fails the test.
func Do(t testing.TB, method, url string, body any) (int, []byte) {
	t.Helper()
	status, data, err := Send(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	return status, data
}

// JSON sends a request, wants the status, and decodes the answer into out.
func JSON(t testing.TB, method, url string, body any, want int, out any) {
	t.Helper()
	status, data := Do(t, method, url, body)
	if status != want {
		t.Fatalf("%s %s: status %d, want %d: %s", method, url, status, want, data)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: %v in %s", method, url, err, data)
		}
	}
}

// Rejected sends a bad request and wants a JSON error with the status.
func Rejected(t testing.TB, method, url string, body any, want int) string {
	t.Helper()
	var e struct{ Error string }
	JSON(t, method, url, body, want, &e)
	if e.Error == "" {
		t.Fatalf("%s %s: no error message", method, url)
	}
	return e.Error
}

// Answer is what a server answered one request.
type Answer struct {
	Status int
	Body   []byte
}

// Concurrently sends n requests at once and counts the answers by status;
// answers are the answers in the order the requests were made. req makes
// each request; it is called n times, one after the other, before any is
// sent. A request that got no answer fails the test and counts as status 0.
func Concurrently(t testing.TB, n int, req func() (method, url string, body any)) (statuses map[int]int, answers []Answer) {
	answers = make([]Answer, n)
	// Held back until all are made, the requests race each other as the
	// clients of a busy shop would.
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range answers {
		method, url, body := req()
		wg.Go(func() {
			<-start
			var err error
			answers[i].Status, answers[i].Body, err = Send(method, url, body)
			if err != nil {
				t.Error(err)
			}
		})
	}
	close(start)
	wg.Wait()
	statuses = map[int]int{}
	for _, a := range answers {
		statuses[a.Status]++
	}
	return statuses, answers
}

// Pages GETs a list page by page, as a client does: it follows each answer's
// Link rel="next" (RFC 8288, here relative to the request) until one has
// none, and answers the pages.
func Pages(t testing.TB, url string) [][]map[string]any {
	t.Helper()
	var pages [][]map[string]any
	for url != "" {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		var page []map[string]any
		err = json.NewDecoder(resp.Body).Decode(&page)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || err != nil {
			t.Fatalf("GET %s: status %d (%v)", url, resp.StatusCode, err)
		}
		pages = append(pages, page)
		url = ""
		if link := resp.Header.Get("Link"); link != "" {
			target, rel, ok := strings.Cut(link, ">; ")
			next, err := resp.Request.URL.Parse(strings.TrimPrefix(target, "<"))
			if !ok || rel != `rel="next"` || err != nil {
				t.Fatalf("GET %s: Link %q", resp.Request.URL, link)
			}
			url = next.String()
		}
	}
	return pages
}
