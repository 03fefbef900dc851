package fsm

// CallForDialog returns the answered call one of whose legs has the given
// Call-ID: the caller's (the call's own id) or a callee leg's. A node uses
// it to adopt a call whose node stopped. It scans the calls in progress.
func (s *State) CallForDialog(callID string) (Call, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if c, ok := s.calls[callID]; ok {
		return c.clone(), true
	}
	for _, c := range s.calls {
		for _, l := range c.Legs {
			if l.CallID == callID {
				return c.clone(), true
			}
		}
	}
	return Call{}, false
}
