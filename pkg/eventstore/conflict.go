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

// conflictOr reads a CONFLICT reply, "CONFLICT <expected> <actual> <id>",
// into a *ConflictError. The id comes last as it may hold spaces.
func conflictOr(err error) error {
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
