package shop

import (
	"fmt"

	"github.com/ordershop/ordershop/internal/platform"
)

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

// Is makes an OutOfStockError a refusal: a 409 that names the product.
func (e *OutOfStockError) Is(target error) bool { return target == platform.ErrRefused }
