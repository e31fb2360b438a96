package platform

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"syscall"

	"github.com/ordershop/ordershop/pkg/entitycache"
	"github.com/ordershop/ordershop/pkg/eventstore"
	"github.com/redis/go-redis/v9"
)

// Error is an error a client may see, with its HTTP status. Written names
// what a batch that failed had written before it failed, when it spans
// partitions, which commit one after the other.
type Error struct {
	Status  int
	Msg     string
	Written []string
}

func (e *Error) Error() string { return e.Msg }

// Errorf returns an *Error with a status and a message.
func Errorf(status int, format string, args ...any) error {
	return &Error{Status: status, Msg: fmt.Sprintf(format, args...)}
}

// TooLarge is the error for a request body over the limit.
func TooLarge(limit int64) error {
	return Errorf(http.StatusRequestEntityTooLarge, "request body is larger than %d bytes", limit)
}

// ErrUnavailable says Redis or a service behind this one cannot be reached.
var ErrUnavailable = &Error{Status: http.StatusServiceUnavailable, Msg: "service unavailable, try again"}

// The kinds of a domain's errors, which know no HTTP: a domain error
// matches one (with errors.Is), StatusOf maps it to a status, and the
// client reads the error's own message.
var (
	// ErrInvalid is a request the domain does not accept as it is: a 400.
	ErrInvalid = errors.New("invalid")
	// ErrTooLarge is a request over a limit of the domain: a 413.
	ErrTooLarge = errors.New("too large")
	// ErrRefused is a valid request the domain says no to, e.g. out of
	// stock: a 409.
	ErrRefused = errors.New("refused")
)

// StatusOf maps an error to the status and message a client gets, and says
// whether to log it. It is the one place that does: only *Error messages and
// those of the domain's own errors reach clients.
//
// WriteError answers with it.
func StatusOf(err error) (int, string, bool) {
	var e *Error
	switch {
	case errors.As(err, &e):
		return e.Status, e.Msg, e.Status >= 500
	case errors.Is(err, entitycache.ErrNotFound):
		return http.StatusNotFound, err.Error(), false
	case errors.Is(err, ErrInvalid):
		return http.StatusBadRequest, err.Error(), false
	case errors.Is(err, ErrTooLarge):
		return http.StatusRequestEntityTooLarge, err.Error(), false
	case errors.Is(err, ErrRefused):
		return http.StatusConflict, err.Error(), false
	case errors.Is(err, eventstore.ErrConflict):
		return http.StatusConflict, "the entity was changed meanwhile, try again", false
	case errors.Is(err, eventstore.ErrTooLate):
		// Its deadline passed before Redis ran it: nothing was written.
		return http.StatusServiceUnavailable, "the command took too long: nothing was written, try again", true
	case errors.Is(err, eventstore.ErrNotReplicated):
		// Written on the primary, which may yet lose it in a failover. A
		// try again with the same key writes nothing more and answers as
		// this one would have.
		return http.StatusServiceUnavailable, "written, but not confirmed by enough Redis replicas in time: " +
			"safe to send again with the same Idempotency-Key", true
	case errors.Is(err, eventstore.ErrSlotMoved):
		// Sent to a Redis node that no longer has the stream (a failover
		// promoted its replica): it ran nothing.
		return http.StatusServiceUnavailable, "the stream moved to another Redis node: nothing was written, try again", true
	case redis.HasErrorPrefix(err, "OOM"):
		// Redis is full (maxmemory, noeviction): it refused the write
		// before it wrote anything, so the command is safe to send again.
		return http.StatusServiceUnavailable, "Redis is out of memory: nothing was written, try again later", true
	case unavailable(err), redis.IsAuthError(err), redis.IsPermissionError(err):
		// A Redis that refuses our credentials is a fault of the deployment,
		// not of the request: the client may try again once it is fixed.
		return http.StatusServiceUnavailable, ErrUnavailable.Msg, true
	default:
		return http.StatusInternalServerError, "internal error", true
	}
}

// unavailable says an error means Redis (or a peer) is away or busy for now.
func unavailable(err error) bool {
	var netErr net.Error
	return errors.As(err, &netErr) || errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, context.DeadlineExceeded) || redis.IsLoadingError(err) || errors.Is(err, redis.ErrClosed) ||
		errors.Is(err, redis.ErrPoolTimeout) || errors.Is(err, redis.ErrPoolExhausted) || inFailover(err)
}

// inFailover says Redis refused a command, before running it, because it
// is failing over: a cluster without a master for some slots (CLUSTERDOWN,
// TRYAGAIN), a replica asked to write (READONLY: a client that has not yet
// learnt of a promotion), a primary without its replicas (NOREPLICAS:
// min-replicas-to-write) or a replica without its primary (MASTERDOWN).
func inFailover(err error) bool {
	for _, prefix := range []string{"CLUSTERDOWN", "TRYAGAIN", "READONLY", "NOREPLICAS", "MASTERDOWN"} {
		if redis.HasErrorPrefix(err, prefix) {
			return true
		}
	}
	return false
}
