package e2e

import (
	"testing"

	"github.com/ordershop/ordershop/tests/scenario"
)

// 200 concurrent orders against a stock of 100: exactly 100 accepted, the
// rest refused with 409, and the stock never below zero in any event.
func TestConcurrentOrdersNeverOversell(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	scenario.Oversell(t, s.Gateway, s.Redis(), "events:{inventory}")
}
