package eventstore

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// ErrConflict is matched by every ConflictError.
var ErrConflict = errors.New("version conflict")

// ConflictError says an entity was not at the version a command expected.
type ConflictError struct {
	EntityID         string
	Expected, Actual int64
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("entity %s is at version %d, not %d", e.EntityID, e.Actual, e.Expected)
}

func (e *ConflictError) Is(target error) bool { return target == ErrConflict }

// ErrTooLate is what an append on a context of AppendBy answers when it
// reached Redis after its time: nothing was written.
var ErrTooLate = errors.New("the append reached Redis after its deadline: nothing was written")

// refusal reads the append script's refusal of a group: a CONFLICT reply,
// "CONFLICT <expected> <actual> <id>", into a *ConflictError (the id comes
// last as it may hold spaces), LATE into ErrTooLate.
func refusal(err error) error {
	if redis.HasErrorPrefix(err, "LATE") {
		return ErrTooLate
	}
	if !redis.HasErrorPrefix(err, "CONFLICT") {
		return err
	}
	parts := strings.SplitN(strings.TrimPrefix(err.Error(), "CONFLICT "), " ", 3)
	if len(parts) != 3 {
		return err
	}
	exp, expErr := strconv.ParseInt(parts[0], 10, 64)
	act, actErr := strconv.ParseInt(parts[1], 10, 64)
	if expErr != nil || actErr != nil {
		return err
	}
	return &ConflictError{EntityID: parts[2], Expected: exp, Actual: act}
}
