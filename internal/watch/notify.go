package watch

// signal makes ch ready without blocking: a value already pending absorbs
// the new one.
func signal(ch chan<- struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// Notify makes the subscription signal ch, without blocking, whenever its
// Key gets a batch newer than the one last returned by Latest, and when the
// subscription ends (its batch terminal, an error, hub shutdown). If such a
// batch or the end has already happened, ch is signalled at once. It is
// the way for one goroutine to wait on many subscriptions: give them all
// the same 1-buffered channel, and on each receive scan them with Updates
// and Done, which never block; signals conflate, so a scan must look at
// every subscription that may have changed. A nil ch stops the signals.
// Notify replaces the channel of an earlier call; Close stops the signals.
//
// The channel is sent to under the Key's poller lock: it must be buffered
// (a send on a full buffer is dropped, never waited for).
func (s *Subscription) Notify(ch chan<- struct{}) {
	p := s.p
	p.mu.Lock()
	s.notify = ch
	if _, live := p.subs[s]; live && ch != nil {
		if p.notifiers == nil {
			p.notifiers = make(map[*Subscription]struct{})
		}
		p.notifiers[s] = struct{}{}
	} else {
		delete(p.notifiers, s)
	}
	p.mu.Unlock()
	if ch == nil {
		return
	}
	// A change or the end before the registration above is caught here;
	// after it, the poller signals.
	if st := p.state.Load(); st != nil && st.version > s.seen.Load() {
		signal(ch)
		return
	}
	select {
	case <-s.done:
		signal(ch)
	default:
	}
}

// notifyLocked signals the channel of every subscription of p that has
// one. p.mu must be held.
func (p *poller) notifyLocked() {
	for s := range p.notifiers {
		signal(s.notify)
	}
}
