package limit

// Watchers returns the number of open watch streams, for the external
// tests.
func (l *Limiter) Watchers() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.watchers
}
