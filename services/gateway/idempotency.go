package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ordershop/ordershop/internal/platform"
)

// Idempotency-Key makes a command safe to send again: a batch that commits
// after the gateway stopped waiting is answered 503, and a client that sends
// it again must not order twice. The first request with a key reserves it
// (SET NX) and runs; its answer is kept for a day and is the answer to every
// request with that key and the same method, path and body. A request whose
// key is taken by another body is 422. One that comes while the first still
// runs waits for its answer, polling, for up to REQUEST_TIMEOUT, then is 409.
// A 5xx answer is not kept: the client may try again.
const (
	idempotencyHeader = "Idempotency-Key"
	maxIdempotencyKey = 200
	keepAnswers       = 24 * time.Hour
	pollAnswer        = 20 * time.Millisecond
)

// answer is what a key holds: the request's hash and, once it has run, its
// answer (Status 0 while it runs).
type answer struct {
	Hash        string `json:"hash"`
	Status      int    `json:"status,omitempty"`
	ContentType string `json:"content_type,omitempty"`
	Body        []byte `json:"body,omitempty"`
}

// idempotent sends commands to their owner, those with an Idempotency-Key
// once per key, through patient, which waits for the owner for up to
// commandTimeout whatever the client does: its answer is the one a retry
// gets, also when the client stopped waiting at REQUEST_TIMEOUT. The keys
// are in the hash slot of stream.
func idempotent(app *platform.App, stream string, commandTimeout time.Duration, owner, patient http.Handler) http.HandlerFunc {
	rdb, wait := app.Redis, app.Config.RequestTimeout
	commandTimeout = max(commandTimeout, wait)
	return func(w http.ResponseWriter, r *http.Request) {
		key, ok := r.Header[http.CanonicalHeaderKey(idempotencyHeader)]
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
		sum := sha256.Sum256([]byte(r.Method + " " + r.URL.RequestURI() + "\n" + string(body)))
		hash := hex.EncodeToString(sum[:])
		redisKey := app.Store.Key(stream, "idempotency:"+key[0])
		deadline := time.Now().Add(wait)
		for {
			reserved, _ := json.Marshal(answer{Hash: hash})
			// The reservation outlives the owner's answer, so that a gateway
			// that dies meanwhile frees the key.
			first, err := rdb.SetNX(r.Context(), redisKey, reserved, commandTimeout+5*time.Second).Result()
			if err != nil {
				platform.WriteError(w, r, fmt.Errorf("%w: %v", platform.ErrUnavailable, err))
				return
			}
			if first {
				run(w, r, rdb, redisKey, hash, body, wait, commandTimeout, patient)
				return
			}
			var got answer
			raw, err := rdb.Get(r.Context(), redisKey).Bytes()
			switch {
			case err == redis.Nil:
				continue // gone since: a 5xx freed it, or it expired
			case err != nil:
				platform.WriteError(w, r, fmt.Errorf("%w: %v", platform.ErrUnavailable, err))
				return
			case json.Unmarshal(raw, &got) != nil:
				platform.WriteError(w, r, fmt.Errorf("idempotency key %s holds %q", redisKey, raw))
				return
			case got.Hash != hash:
				platform.WriteError(w, r, platform.Errorf(http.StatusUnprocessableEntity,
					"Idempotency-Key %q was used for another request: a new request needs a new key", key[0]))
				return
			case got.Status != 0:
				replay(w, got)
				return
			case time.Now().After(deadline):
				platform.WriteError(w, r, platform.Errorf(http.StatusConflict,
					"a request with Idempotency-Key %q is still running: ask again later with the same key", key[0]))
				return
			}
			select {
			case <-r.Context().Done():
				return
			case <-time.After(pollAnswer):
			}
		}
	}
}

// checkIdempotencyKey: one key of 1 to 200 printable ASCII characters.
func checkIdempotencyKey(key []string) error {
	if len(key) != 1 || key[0] == "" || len(key[0]) > maxIdempotencyKey {
		return platform.Errorf(http.StatusBadRequest, "%s must be one key of 1 to %d characters", idempotencyHeader, maxIdempotencyKey)
	}
	for _, c := range []byte(key[0]) {
		if c < ' ' || c > '~' {
			return platform.Errorf(http.StatusBadRequest, "%s must be printable ASCII", idempotencyHeader)
		}
	}
	return nil
}

// run asks the owner, on a context of its own, keeps the answer under the
// key (or frees the key on a 5xx), and answers the client with it, or with
// 503 if the owner has not answered within REQUEST_TIMEOUT: the answer is
// kept when it comes, for the client's next try with the same key.
func run(w http.ResponseWriter, r *http.Request, rdb redis.UniversalClient, key, hash string, body []byte, wait, timeout time.Duration, owner http.Handler) {
	done := make(chan answer, 1)
	detached := context.WithoutCancel(r.Context())
	ctx, cancel := context.WithTimeout(detached, timeout)
	req := r.Clone(ctx)
	req.Body = io.NopCloser(bytes.NewReader(body))
	go func() {
		defer cancel()
		rec := &recorder{header: http.Header{}}
		serve(owner, rec, req)
		a := answer{Hash: hash, Status: rec.status, ContentType: rec.header.Get("Content-Type"), Body: rec.body.Bytes()}
		if a.Status == 0 {
			a.Status = http.StatusOK
		}
		// On detached: the owner's time may be up, the answer still counts.
		if a.Status >= 500 {
			rdb.Del(detached, key)
		} else if raw, err := json.Marshal(a); err == nil {
			rdb.Set(detached, key, raw, keepAnswers)
		}
		done <- a
	}()
	select {
	case a := <-done:
		replay(w, a)
	case <-time.After(wait):
		platform.WriteError(w, r, fmt.Errorf("%w: no answer yet: ask again with the same %s", platform.ErrUnavailable, idempotencyHeader))
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
	if a.ContentType != "" {
		w.Header().Set("Content-Type", a.ContentType)
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
