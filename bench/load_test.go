package main

import (
	"slices"
	"testing"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// A server that stalls for 100 ms at 100 requests a second: the client,
// with its one worker busy, sends the requests due meanwhile late, and
// vegeta times each from when it was sent. Counted from when each was due,
// the stall shows in every request it delayed, and a request that was due
// but never sent counts too.
func TestLatenciesCountFromWhenRequestsWereDue(t *testing.T) {
	start := time.Unix(1000, 0)
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	var results []*vegeta.Result
	// Requests 0..8 due at 10, 20, … 90 ms, answered in 1 ms; request 9 is
	// sent on time, at 100 ms, and stalls until 200 ms; 10..18 were due
	// meanwhile and go out at 200 ms, answered in 1 ms.
	for k := range 9 {
		results = append(results, &vegeta.Result{Seq: uint64(k), Timestamp: start.Add(ms(10 * (k + 1))), Latency: ms(1)})
	}
	results = append(results, &vegeta.Result{Seq: 9, Timestamp: start.Add(ms(100)), Latency: ms(100)})
	for k := 10; k < 19; k++ {
		results = append(results, &vegeta.Result{Seq: uint64(k), Timestamp: start.Add(ms(200)), Latency: ms(1)})
	}
	// The attack lasts 200 ms: request 19, due at 200 ms, was never sent.
	lat := sinceDue(results, 100, ms(200))
	want := []time.Duration{}
	for range 9 {
		want = append(want, ms(1))
	}
	want = append(want, ms(100))
	for k := 10; k < 19; k++ {
		want = append(want, ms(200+1-10*(k+1)))
	}
	want = append(want, ms(201-200)) // from 200 ms, when it was due, to the end at 201 ms
	if !slices.Equal(lat, want) {
		t.Fatalf("latencies\n got %v\nwant %v", lat, want)
	}
}
