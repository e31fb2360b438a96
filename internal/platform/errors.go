package platform

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"

	"github.com/ordershop/ordershop/pkg/eventstore"
)

// Error is an error a client may see, with its HTTP status.
type Error struct {
	Status int
	Msg    string
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

// StatusOf maps an error to the status and message a client gets, and says
// whether to log it. Only *Error messages reach clients.
func StatusOf(err error) (int, string, bool) {
	var e *Error
	var netErr net.Error
	switch {
	case errors.As(err, &e):
		return e.Status, e.Msg, e.Status >= 500
	case errors.Is(err, eventstore.ErrConflict):
		return http.StatusConflict, "the entity was changed meanwhile, try again", false
	case errors.As(err, &netErr), errors.Is(err, io.EOF), errors.Is(err, syscall.ECONNREFUSED),
		errors.Is(err, context.DeadlineExceeded), strings.Contains(err.Error(), "LOADING"),
		strings.Contains(err.Error(), "connection pool"), strings.Contains(err.Error(), "client is closed"):
		return http.StatusServiceUnavailable, ErrUnavailable.Msg, true
	default:
		return http.StatusInternalServerError, "internal error", true
	}
}
