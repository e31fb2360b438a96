package eventstore_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/ordershop/ordershop/pkg/eventstore"
)

// An operation on one entity: an append expecting a version, or a read of
// the version.
type versionOp struct {
	entity   string
	append   bool
	expected int64
}

type versionResult struct {
	version  int64 // after the append, or read
	conflict bool
}

// entityVersions is the model of one entity's version in the store: an
// append expecting the current version (or any) raises it by one; any other
// expectation conflicts and changes nothing; a read sees it.
var entityVersions = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		by := map[string][]porcupine.Operation{}
		for _, op := range history {
			e := op.Input.(versionOp).entity
			by[e] = append(by[e], op)
		}
		var out [][]porcupine.Operation
		for _, ops := range by {
			out = append(out, ops)
		}
		return out
	},
	Init: func() any { return int64(0) },
	Step: func(state, input, output any) (bool, any) {
		cur, in, out := state.(int64), input.(versionOp), output.(versionResult)
		switch {
		case !in.append:
			return out.version == cur, cur
		case in.expected == eventstore.AnyVersion || in.expected == cur:
			return !out.conflict && out.version == cur+1, cur + 1
		default:
			return out.conflict && out.version == cur, cur
		}
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(versionOp), output.(versionResult)
		if !in.append {
			return fmt.Sprintf("read %s → v%d", in.entity, out.version)
		}
		return fmt.Sprintf("append %s expecting %d → v%d conflict=%v", in.entity, in.expected, out.version, out.conflict)
	},
}

// Concurrent appends with expected versions and reads of the version are
// linearizable: every history of them is one that some order of the
// operations, each taking effect at one instant between its call and its
// return, explains.
func TestAppendsWithExpectedVersionsAreLinearizable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	entities := []string{"a", "b", "c"}
	start := time.Now()
	deadline := start.Add(time.Second)
	var mu sync.Mutex
	var history []porcupine.Operation
	var wg sync.WaitGroup
	for client := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			seen := map[string]int64{}
			for n := 0; n < 300 && time.Now().Before(deadline); n++ {
				in := versionOp{entity: entities[rand.IntN(len(entities))], append: rand.IntN(4) > 0}
				switch r := rand.IntN(10); {
				case r < 2:
					in.expected = eventstore.AnyVersion
				case r < 8:
					in.expected = seen[in.entity]
				default:
					in.expected = rand.Int64N(seen[in.entity] + 3)
				}
				call := time.Since(start).Nanoseconds()
				var out versionResult
				var err error
				if in.append {
					var events []eventstore.Event
					events, err = s.Append(ctx, "lin", eventstore.Record{Event: event(t, "customer_updated", in.entity, n), Expected: in.expected})
					var conflict *eventstore.ConflictError
					switch {
					case errors.As(err, &conflict):
						out, err = versionResult{version: conflict.Actual, conflict: true}, nil
					case err == nil:
						out.version = events[0].Version
					}
				} else {
					out.version, err = s.Version(ctx, "lin", in.entity)
				}
				ret := time.Since(start).Nanoseconds()
				if err != nil {
					t.Error(err)
					return
				}
				seen[in.entity] = out.version
				mu.Lock()
				history = append(history, porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret})
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(history) < 100 {
		t.Fatalf("only %d operations in the history", len(history))
	}
	if res := porcupine.CheckOperationsTimeout(entityVersions, history, 10*time.Second); res != porcupine.Ok {
		t.Fatalf("history of %d operations is not linearizable (%v)", len(history), res)
	}
}
