package eventstore

// Waiting is the number of appends to stream that wait for the run in
// flight, and whether one is in flight.
func Waiting(s *Store, stream string) (n int, busy bool) {
	q := s.queue(stream)
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.waiting), q.busy
}
