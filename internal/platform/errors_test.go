package platform_test

import (
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/ordershop/ordershop/internal/platform"
	"github.com/ordershop/ordershop/pkg/eventstore"
)

// kinded is a domain's error as a domain without HTTP writes one: its own
// message, and a kind of platform's.
type kinded struct {
	kind error
	msg  string
}

func (e kinded) Error() string { return e.msg }
func (e kinded) Unwrap() error { return e.kind }

// A domain's error is answered with the status of its kind and its own
// message, byte for byte, and is not logged.
func TestDomainErrorKindsMapToStatuses(t *testing.T) {
	for kind, want := range map[error]int{
		platform.ErrInvalid:  http.StatusBadRequest,
		platform.ErrTooLarge: http.StatusRequestEntityTooLarge,
		platform.ErrRefused:  http.StatusConflict,
	} {
		err := kinded{kind, fmt.Sprintf("name %q is wrong", "a\"b")}
		status, msg, logged := platform.StatusOf(err)
		if status != want || msg != err.msg || logged {
			t.Errorf("%v: %d %q logged %v, want %d %q not logged", kind, status, msg, logged, want, err.msg)
		}
	}
	if status, _, _ := platform.StatusOf(fmt.Errorf("commit: %w", eventstore.ErrTooLate)); status != http.StatusServiceUnavailable {
		t.Errorf("an append past its deadline: %d, want 503 (nothing was written: safe to send again)", status)
	}
	if status, _, _ := platform.StatusOf(fmt.Errorf("%w: %w", eventstore.ErrSlotMoved, errors.New("MOVED 1597 redis-5:6379"))); status != http.StatusServiceUnavailable {
		t.Errorf("an append sent to a node that lost its slot in a failover: %d, want 503 (nothing was written: safe to send again)", status)
	}
	if status, _, _ := platform.StatusOf(errors.New("invalid")); status != http.StatusInternalServerError {
		t.Errorf("an error of no kind: %d, want 500", status)
	}
}
