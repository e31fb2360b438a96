package shop

import (
	"fmt"

	"github.com/ordershop/ordershop/internal/platform"
)

// Error is an error of the shop a client reads: its message, and one of
// platform's kinds (ErrInvalid, ErrTooLarge), which says how it is answered.
type Error struct {
	Kind error
	Msg  string
}

func (e *Error) Error() string { return e.Msg }
func (e *Error) Unwrap() error { return e.Kind }

// invalid is an Error of kind platform.ErrInvalid.
func invalid(format string, args ...any) error {
	return &Error{Kind: platform.ErrInvalid, Msg: fmt.Sprintf(format, args...)}
}

// OutOfStockError says an order wants more of a product than is left.
type OutOfStockError struct {
	ProductID    string
	Wanted, Left int64
	NoInventory  bool // the product has no inventory at all
}

func (e *OutOfStockError) Error() string {
	if e.NoInventory {
		return fmt.Sprintf("product %s is out of stock: it has no inventory", e.ProductID)
	}
	return fmt.Sprintf("product %s is out of stock: %d wanted, %d left", e.ProductID, e.Wanted, e.Left)
}

// Is makes an OutOfStockError a refusal, whose message names the product.
func (e *OutOfStockError) Is(target error) bool { return target == platform.ErrRefused }
