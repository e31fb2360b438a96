package main

import (
	"fmt"
	"math"
	"net"
	"net/http"
	"slices"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// fractions of the max throughput at which latencies are measured.
var fractions = []float64{0.25, 0.50, 0.75}

// load is what one request's figures were under load: the max throughput
// of a closed loop, and p50/p99 at fixed rates.
type load struct {
	Max   float64       // successful requests per second, closed loop
	CPU   time.Duration // CPU time per request of the processes that serve it, Redis included, in the closed loops
	Redis time.Duration // Redis's part of CPU
	Steps []step        // at each of fractions of Max
}

// step is an open-loop attack at a fixed rate: every request is due on a
// schedule, whether the ones before it were answered or not, and its
// latency counts from when it was due, so that a stall shows in the
// latencies instead of delaying the requests that would have seen it (no
// coordinated omission), also when the load generator falls behind.
type step struct {
	Rate     float64 // asked for, per second
	Achieved float64 // sent, per second
	Failed   float64 // share of the requests that failed or timed out
	P50, P99 time.Duration
}

// P99At is the p99 latency of the step at fraction f of the max.
func (l load) P99At(f float64) time.Duration {
	for i, s := range l.Steps {
		if fractions[i] == f {
			return s.P99
		}
	}
	return 0
}

// attacker drives targets with vegeta.
type attacker struct {
	conns int           // concurrent requests of the closed loop
	d     time.Duration // each attack's duration
}

// side is what measure measures: a target and the processes that serve it,
// redis among them.
type side struct {
	target vegeta.Target
	procs  []*proc
	redis  *proc
}

// measure measures a target and its yardstick the same way, one after the
// other so that both see the same machine: each one's max throughput is the
// better of two closed loops of conns requests in flight, taken in turns,
// and its CPU per request is over both; then each is sent at fixed
// fractions of its max.
func (a attacker) measure(name string, target, yardstick side) (load, load, error) {
	sides := []side{target, yardstick}
	ls := make([]load, 2)
	for _, s := range sides {
		// Connections open, caches and pools warm.
		if _, err := a.attack(name, s.target, a.d/5); err != nil {
			return load{}, load{}, err
		}
	}
	requests := make([]uint64, 2)
	for range 2 {
		for i, s := range sides {
			cpu, redis := cpuTime(s.procs...), cpuTime(s.redis)
			m, err := a.attack(name, s.target, a.d)
			if err != nil {
				return load{}, load{}, err
			}
			ls[i].CPU += cpuTime(s.procs...) - cpu
			ls[i].Redis += cpuTime(s.redis) - redis
			requests[i] += m.Requests
			ls[i].Max = max(ls[i].Max, m.Throughput)
		}
	}
	for _, f := range fractions {
		for i, s := range sides {
			st, err := a.step(name, s.target, f*ls[i].Max)
			if err == nil && (st.Achieved < 0.95*st.Rate || st.Failed > 0) {
				// The load generator fell behind, or requests timed out:
				// the machine was busier than when the max was measured.
				// Once more.
				st, err = a.step(name, s.target, f*ls[i].Max)
			}
			if err != nil {
				return load{}, load{}, err
			}
			ls[i].Steps = append(ls[i].Steps, st)
		}
	}
	for i := range ls {
		ls[i].CPU /= time.Duration(requests[i])
		ls[i].Redis /= time.Duration(requests[i])
	}
	return ls[0], ls[1], nil
}

// maxInFlight bounds the open loop's requests in flight, and so its
// connections: a stall at thousands of requests a second would otherwise
// open a connection for each request sent meanwhile. Requests it holds back
// count from when they were due all the same.
const maxInFlight = 256

// step sends t at rate per second for the attacker's d. Requests that fail
// or time out (after 5 s) count with the time they took; requests that were
// due but never sent, because maxInFlight were in flight, count with the
// time from when they were due to the attack's end, at the least.
func (a attacker) step(name string, t vegeta.Target, rate float64) (step, error) {
	freq := max(1, int(math.Round(rate)))
	var results []*vegeta.Result
	m, err := a.run(name, t, vegeta.Rate{Freq: freq, Per: time.Second}, a.d, maxInFlight, 5*time.Second,
		func(r *vegeta.Result) { results = append(results, r) })
	if err != nil {
		return step{}, err
	}
	lat := sinceDue(results, freq, a.d)
	slices.Sort(lat)
	q := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	return step{Rate: rate, Achieved: m.Rate, Failed: 1 - m.Success, P50: q(0.50), P99: q(0.99)}, nil
}

// sinceDue is the latency of each request of an attack at freq per second
// for d counted from when it was due, and of each that was due but never
// sent, from when it was due to the attack's end. vegeta's pacer has the
// k-th request (from 0) due at (k+1) intervals after the attack's start,
// and sends those due within d; the start is the latest that no request was
// sent before it was due.
func sinceDue(results []*vegeta.Result, freq int, d time.Duration) []time.Duration {
	interval := time.Second / time.Duration(freq)
	dueAt := func(k uint64) time.Duration { return time.Duration(k+1) * interval }
	start, end := results[0].Timestamp.Add(-dueAt(results[0].Seq)), time.Time{}
	for _, r := range results {
		if d := r.Timestamp.Add(-dueAt(r.Seq)); d.Before(start) {
			start = d
		}
		if e := r.Timestamp.Add(r.Latency); e.After(end) {
			end = e
		}
	}
	lat := make([]time.Duration, 0, len(results))
	for _, r := range results {
		lat = append(lat, r.Timestamp.Add(r.Latency).Sub(start.Add(dueAt(r.Seq))))
	}
	for k := uint64(len(results)); k < uint64(d/interval); k++ {
		lat = append(lat, end.Sub(start.Add(dueAt(k))))
	}
	return lat
}

// attack runs t for d as fast as conns workers go: a closed loop. Any
// failed request fails it.
func (a attacker) attack(name string, t vegeta.Target, d time.Duration) (*vegeta.Metrics, error) {
	m, err := a.run(name, t, vegeta.Rate{}, d, a.conns, 10*time.Second, nil)
	if err == nil && m.Success < 1 {
		err = fmt.Errorf("%s: %.2f%% of %d requests failed: %v %v", name, 100*(1-m.Success), m.Requests, m.StatusCodes, m.Errors)
	}
	return m, err
}

// run runs one attack with at most workers requests in flight, and hands
// each result to each if given. Its connections are closed at its end.
func (a attacker) run(name string, t vegeta.Target, pacer vegeta.Pacer, d time.Duration, workers int, timeout time.Duration, each func(*vegeta.Result)) (*vegeta.Metrics, error) {
	tr := &http.Transport{MaxIdleConnsPerHost: workers, DialContext: (&net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}).DialContext}
	defer tr.CloseIdleConnections()
	atk := vegeta.NewAttacker(vegeta.Client(&http.Client{Transport: tr, Timeout: timeout}),
		vegeta.Workers(uint64(min(workers, a.conns))), vegeta.MaxWorkers(uint64(workers)), vegeta.MaxBody(0))
	var m vegeta.Metrics
	for res := range atk.Attack(vegeta.NewStaticTargeter(t), pacer, d, name) {
		m.Add(res)
		if each != nil {
			each(res)
		}
	}
	m.Close()
	if m.Requests == 0 {
		return nil, fmt.Errorf("%s: no request sent", name)
	}
	return &m, nil
}

// get and postJSON are the attacks' targets.
func get(url string) vegeta.Target { return vegeta.Target{Method: http.MethodGet, URL: url} }

func postJSON(url, body string) vegeta.Target {
	return vegeta.Target{Method: http.MethodPost, URL: url, Body: []byte(body),
		Header: http.Header{"Content-Type": {"application/json"}}}
}
