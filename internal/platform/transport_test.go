package platform

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ordershop/ordershop/internal/redistest"
)

// replicas serves one port on two loopback addresses, 127.0.0.1 and
// 127.0.0.2, as two replicas of one service behind one name, and counts the
// calls each answers.
type replicas struct {
	port  string
	calls [2]atomic.Int64
}

func startReplicas(t *testing.T, keepAlive bool) *replicas {
	t.Helper()
	r := &replicas{}
	var lns [2]net.Listener
	for try := 0; lns[1] == nil; try++ {
		a, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		r.port = strconv.Itoa(a.Addr().(*net.TCPAddr).Port)
		b, err := net.Listen("tcp", "127.0.0.2:"+r.port)
		if err != nil {
			a.Close()
			if try == 10 {
				t.Fatalf("no port free on both 127.0.0.1 and 127.0.0.2: %v", err)
			}
			continue
		}
		lns = [2]net.Listener{a, b}
	}
	for i, ln := range lns {
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			r.calls[i].Add(1)
			fmt.Fprint(w, i)
		})}
		srv.SetKeepAlivesEnabled(keepAlive)
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
	}
	return r
}

// call asks svc:port through c and fails on any error.
func (r *replicas) call(t *testing.T, c *http.Client) {
	t.Helper()
	resp, err := c.Get("http://svc:" + r.port + "/")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
}

// lookupOf resolves svc to the addresses *addrs holds at the time of the call.
func lookupOf(addrs *atomic.Pointer[[]string]) func(context.Context, string) ([]string, error) {
	return func(_ context.Context, host string) ([]string, error) {
		if host != "svc" {
			return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
		}
		return append([]string(nil), *addrs.Load()...), nil
	}
}

func TestTransportSpreadsConnectionsOverTheAddressesOfANameAndSkipsOneThatRefuses(t *testing.T) {
	r := startReplicas(t, false) // a connection per call: every call dials
	var addrs atomic.Pointer[[]string]
	// 127.0.0.3 is loopback too, and nothing listens there: refused at once.
	addrs.Store(&[]string{"127.0.0.3", "127.0.0.2", "127.0.0.1"})
	c := &http.Client{Transport: newTransport(2*time.Second, time.Minute, lookupOf(&addrs)), Timeout: 5 * time.Second}
	const n = 30
	for range n {
		r.call(t, c)
	}
	a, b := r.calls[0].Load(), r.calls[1].Load()
	// Round robin over three addresses, the refused one's turn going to the next.
	if a+b != n || a < n/3 || b < n/3 {
		t.Fatalf("127.0.0.1 answered %d calls, 127.0.0.2 %d, of %d", a, b, n)
	}
}

func TestTransportMovesItsPooledConnectionsToAReplicaThatCameUp(t *testing.T) {
	r := startReplicas(t, true)
	var addrs atomic.Pointer[[]string]
	addrs.Store(&[]string{"127.0.0.1"})
	const refresh = 200 * time.Millisecond
	c := &http.Client{Transport: newTransport(2*time.Second, refresh, lookupOf(&addrs)), Timeout: 5 * time.Second}
	for range 20 {
		r.call(t, c)
	}
	if r.calls[1].Load() != 0 {
		t.Fatal("127.0.0.2 was called before the name resolved to it")
	}
	// Scaled up: the name now resolves to both. Calls keep the pooled
	// connection busy, never idle long enough to time out; still the next
	// refresh moves calls to the new replica.
	addrs.Store(&[]string{"127.0.0.1", "127.0.0.2"})
	start := time.Now()
	redistest.Eventually(t, 10*refresh, "a call answered by the new replica", func() bool {
		r.call(t, c)
		return r.calls[1].Load() > 0
	})
	t.Logf("first call to the new replica after %v", time.Since(start).Round(time.Millisecond))
}

// writeCounter counts the writes on a connection.
type writeCounter struct {
	net.Conn
	writes *atomic.Int64
}

func (c writeCounter) Write(b []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(b)
}

// onlyReader hides what a body is, as the body a proxy forwards is, or the
// tracing transport's wrapper of one.
type onlyReader struct{ io.Reader }

// A request with a body goes out in one write, headers and body, also
// through the tracing transport (Outbound) and with a body the transport
// cannot tell is in memory: the callee reads it at once, and neither side
// makes a system call more.
func TestTransportWritesARequestAndItsBodyAtOnce(t *testing.T) {
	got := make(chan string, 1)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- string(b)
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	var writes atomic.Int64
	tr := newTransport(2*time.Second, time.Minute, net.DefaultResolver.LookupHost)
	dial := tr.DialContext
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		return writeCounter{c, &writes}, err
	}
	c := &http.Client{Transport: tracedCalls{tr}, Timeout: 5 * time.Second}
	for _, body := range []string{`{"name":"Ada"}`, strings.Repeat("x", maxInMemory)} {
		writes.Store(0)
		req, err := http.NewRequest(http.MethodPost, "http://"+ln.Addr().String()+"/", onlyReader{strings.NewReader(body)})
		if err != nil {
			t.Fatal(err)
		}
		req.ContentLength = int64(len(body))
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if b := <-got; b != body {
			t.Fatalf("the server read %d bytes, want %d", len(b), len(body))
		}
		// The largest body read first is whole too, in writes of the
		// transport's buffer.
		if n := writes.Load(); n != 1 && len(body) < maxInMemory {
			t.Errorf("a request of %d bytes of body in %d writes", len(body), n)
		}
	}
}
