package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ordershop/ordershop/internal/platform"
)

// Idempotency-Key makes a command safe to send again: a command whose
// answer is lost or late, after the gateway stopped waiting, is not done
// twice when the client sends it again with the same key.
//
// A key names one request: its method, path, Content-Type, If-Match and
// body. The first request with a key reserves it and runs; a request with
// the key and anything else is 422, whatever the path. The answer of a
// command that ran is kept for a day, with its headers, and answers every
// request with the key. Not kept, so that the corrected request runs, are
// the answers that say the request could not run as sent (400, 412, 413,
// 415): the key is free again. A 5xx, or no answer within REQUEST_TIMEOUT,
// says nothing of what the owner did: the key stays bound to the request,
// and the next request with it runs again. That is safe because the owner
// is idempotent by the key too (eventstore.WithIdempotencyKey): a command
// that committed answers its first answer again, and writes nothing. A
// request that comes while another with the key runs waits for its answer,
// looking again at growing intervals, up to REQUEST_TIMEOUT, then is 409.
const (
	maxIdempotencyKey = 200
	keepAnswers       = 24 * time.Hour
	firstLook         = 10 * time.Millisecond // then twice as long each time,
	lastLook          = 500 * time.Millisecond
)

// answer is what a key holds: the request's hash and, once it has run, its
// answer (Status 0 while it runs). Again says the last try's outcome is
// unknown, so the next try with the hash runs.
type answer struct {
	Hash   string      `json:"hash"`
	Again  bool        `json:"again,omitempty"`
	Status int         `json:"status,omitempty"`
	Header http.Header `json:"header,omitempty"`
	Body   []byte      `json:"body,omitempty"`
}

// claim reserves a key for a run: when it is free, or when it holds the
// unknown outcome (ARGV[3]) of the same request; else it answers what the
// key holds.
var claim = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= ARGV[3] then return cur end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
`)

// keep replaces the claim of a run (ARGV[1]) with its outcome (ARGV[2],
// for ARGV[3] ms; the key deleted if empty), if the key holds it still.
var keep = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '' then redis.call('DEL', KEYS[1]) else redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end
return 1
`)

// idempotent sends commands to their owner, those with an Idempotency-Key
// once per key, through patient, which waits for the owner for up to
// commandTimeout whatever the client does: its answer is the one a retry
// gets, also when the client stopped waiting at REQUEST_TIMEOUT.
func idempotent(app *platform.App, commandTimeout time.Duration, owner, patient http.Handler) http.HandlerFunc {
	rdb, wait := app.Redis, app.Config.RequestTimeout
	commandTimeout = max(commandTimeout, wait)
	claimFor := commandTimeout + 5*time.Second
	return func(w http.ResponseWriter, r *http.Request) {
		key, ok := r.Header[platform.IdempotencyHeader]
		if !ok {
			owner.ServeHTTP(w, r)
			return
		}
		if err := checkIdempotencyKey(key); err != nil {
			platform.WriteError(w, r, err)
			return
		}
		body, err := platform.ReadBody(r)
		if err != nil {
			platform.WriteError(w, r, err)
			return
		}
		k := idempotencyKey{rdb: rdb, key: app.Config.KeyPrefix + "idempotency:{" + key[0] + "}", hash: fingerprint(r, body)}
		deadline, look := time.Now().Add(wait), firstLook
		for {
			k.until = time.Now().Add(claimFor)
			got, first, err := k.claim(r.Context(), claimFor)
			switch {
			case err != nil:
				platform.WriteError(w, r, err)
				return
			case first:
				k.run(w, r, body, wait, commandTimeout, patient)
				return
			case got.Hash != k.hash:
				platform.WriteError(w, r, platform.Errorf(http.StatusUnprocessableEntity,
					"%s %q was used for another request: a new request needs a new key", platform.IdempotencyHeader, key[0]))
				return
			case got.Status != 0:
				replay(w, got)
				return
			case time.Now().After(deadline):
				platform.WriteError(w, r, platform.Errorf(http.StatusConflict,
					"a request with %s %q is still running: ask again later with the same key", platform.IdempotencyHeader, key[0]))
				return
			}
			select {
			case <-r.Context().Done():
				return
			case <-time.After(min(look, time.Until(deadline))):
				look = min(2*look, lastLook)
			}
		}
	}
}

// fingerprint is the hash of what makes a request the one it is.
func fingerprint(r *http.Request, body []byte) string {
	h := sha256.New()
	for _, s := range []string{r.Method, r.URL.RequestURI(), r.Header.Get("Content-Type"), r.Header.Get("If-Match")} {
		io.WriteString(h, s+"\n")
	}
	h.Write(body)
	return hex.EncodeToString(h.Sum(nil))
}

// checkIdempotencyKey: one key of 1 to 200 printable ASCII characters.
func checkIdempotencyKey(key []string) error {
	if len(key) != 1 || key[0] == "" || len(key[0]) > maxIdempotencyKey {
		return platform.Errorf(http.StatusBadRequest, "%s must be one key of 1 to %d characters", platform.IdempotencyHeader, maxIdempotencyKey)
	}
	for _, c := range []byte(key[0]) {
		if c < ' ' || c > '~' {
			return platform.Errorf(http.StatusBadRequest, "%s must be printable ASCII", platform.IdempotencyHeader)
		}
	}
	return nil
}

// idempotencyKey is a client's key in Redis, and the hash of the request
// that came with it; once claimed, held until about until at the latest.
type idempotencyKey struct {
	rdb       redis.UniversalClient
	key, hash string
	until     time.Time
}

func (k idempotencyKey) value(a answer) string {
	raw, _ := json.Marshal(a)
	return string(raw)
}

// claim reserves the key for ttl, or answers what it holds.
func (k idempotencyKey) claim(ctx context.Context, ttl time.Duration) (got answer, first bool, err error) {
	raw, err := claim.Run(ctx, k.rdb, []string{k.key},
		k.value(answer{Hash: k.hash}), ttl.Milliseconds(), k.value(answer{Hash: k.hash, Again: true})).Text()
	switch {
	case errors.Is(err, redis.Nil):
		return got, true, nil
	case err != nil:
		return got, false, fmt.Errorf("%w: %v", platform.ErrUnavailable, err)
	case json.Unmarshal([]byte(raw), &got) != nil:
		return got, false, fmt.Errorf("idempotency key %s holds %q", k.key, raw)
	}
	return got, false, nil
}

// keep records the answer of a run in place of its claim: kept, the key
// freed, or the outcome unknown.
func (k idempotencyKey) keep(ctx context.Context, a answer) error {
	outcome := k.value(a)
	switch {
	case a.Status >= 500:
		outcome = k.value(answer{Hash: k.hash, Again: true})
	case a.Status == http.StatusBadRequest || a.Status == http.StatusPreconditionFailed ||
		a.Status == http.StatusRequestEntityTooLarge || a.Status == http.StatusUnsupportedMediaType:
		outcome = ""
	}
	return keep.Run(ctx, k.rdb, []string{k.key}, k.value(answer{Hash: k.hash}), outcome, keepAnswers.Milliseconds()).Err()
}

// keepTrying tries keep again, at growing intervals, until Redis takes it
// or the claim is over: a Redis that refused it (a failover, its replica
// away: NOREPLICAS) would else leave the claim in place, and every retry
// with the key would wait for a run that is over until the claim expires
// (COMMAND_TIMEOUT and 5 s).
func (k idempotencyKey) keepTrying(ctx context.Context, a answer) {
	for look := firstLook; time.Now().Before(k.until); look = min(2*look, lastLook) {
		time.Sleep(look)
		if k.keep(ctx, a) == nil {
			return
		}
	}
}

// run asks the owner, on a context of its own, keeps its answer (see keep),
// and answers the client with it, or with 503 if the owner has not answered
// within REQUEST_TIMEOUT: the answer is kept when it comes, for the
// client's next try with the same key.
func (k idempotencyKey) run(w http.ResponseWriter, r *http.Request, body []byte, wait, timeout time.Duration, owner http.Handler) {
	done := make(chan answer, 1)
	detached := context.WithoutCancel(r.Context())
	ctx, cancel := context.WithTimeout(detached, timeout)
	req := r.Clone(ctx)
	req.Body = io.NopCloser(bytes.NewReader(body))
	go func() {
		defer cancel()
		rec := &recorder{header: http.Header{}}
		serve(owner, rec, req)
		a := answer{Hash: k.hash, Status: rec.status, Header: rec.header, Body: rec.body.Bytes()}
		if a.Status == 0 {
			a.Status = http.StatusOK
		}
		a.Header.Del("Date")
		a.Header.Del("Content-Length")
		// On detached: the owner's time may be up, the answer still counts.
		kept := k.keep(detached, a)
		done <- a
		if kept != nil {
			k.keepTrying(detached, a)
		}
	}()
	select {
	case a := <-done:
		replay(w, a)
	case <-time.After(wait):
		platform.WriteError(w, r, fmt.Errorf("%w: no answer yet: ask again with the same %s", platform.ErrUnavailable, platform.IdempotencyHeader))
	case <-r.Context().Done():
	}
}

// serve serves a request outside the server's own goroutine, where a panic
// would end the gateway: the proxy aborts an answer it cannot copy by one.
func serve(h http.Handler, rec *recorder, r *http.Request) {
	defer func() {
		if p := recover(); p != nil {
			rec.status = http.StatusBadGateway
		}
	}()
	h.ServeHTTP(rec, r)
}

func replay(w http.ResponseWriter, a answer) {
	for name, values := range a.Header {
		w.Header()[name] = values
	}
	w.WriteHeader(a.Status)
	w.Write(a.Body)
}

// recorder keeps an owner's answer in memory.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (rec *recorder) Header() http.Header { return rec.header }
func (rec *recorder) WriteHeader(status int) {
	if rec.status == 0 {
		rec.status = status
	}
}
func (rec *recorder) Flush() {} // the answer is whole or nothing
func (rec *recorder) Write(b []byte) (int, error) {
	rec.WriteHeader(http.StatusOK)
	return rec.body.Write(b)
}
