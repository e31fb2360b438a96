package e2e

import (
	"testing"

	"github.com/ordershop/ordershop/tests/scenario"
)

// The original client's scenario, through the gateway of the containers.
func TestOriginalScenario(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	scenario.Original(t, s.Gateway)
}
