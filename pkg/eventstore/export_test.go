package eventstore

// MaxRuns is how many runs of a stream's appends may be in flight.
const MaxRuns = maxRuns

// Waiting is the number of appends to stream that wait for a run in
// flight, and the number of runs in flight.
func Waiting(s *Store, stream string) (n, running int) {
	return s.queue(stream).Waiting()
}
