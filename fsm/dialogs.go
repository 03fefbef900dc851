package fsm

// CallForDialog returns the answered call one of whose legs has the given
// Call-ID: the caller's (the call's own id) or a callee leg's. A node uses
// it to adopt a call whose node stopped. A callee leg's Call-ID is looked
// up in the leg index (callByLeg).
func (s *State) CallForDialog(callID string) (Call, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if c, ok := s.calls[callID]; ok {
		return c.clone(), true
	}
	if c, ok := s.calls[s.callByLeg[callID]]; ok {
		return c.clone(), true
	}
	return Call{}, false
}

// putCall stores c as the call of its ID and indexes its legs' Call-IDs
// (CallForDialog is asked for every in-dialog request that matched no
// dialog on this node: a scan of every call was the cost of each).
func (s *State) putCall(c *Call) {
	s.unindexLegs(c.ID)
	s.calls[c.ID] = c
	for _, l := range c.Legs {
		if l.CallID != "" && l.CallID != c.ID {
			s.callByLeg[l.CallID] = c.ID
		}
	}
}

// dropCall forgets the call of id and its legs' index entries.
func (s *State) dropCall(id string) {
	s.unindexLegs(id)
	delete(s.calls, id)
}

func (s *State) unindexLegs(id string) {
	old, ok := s.calls[id]
	if !ok {
		return
	}
	for _, l := range old.Legs {
		if s.callByLeg[l.CallID] == id {
			delete(s.callByLeg, l.CallID)
		}
	}
}

// AdoptCall moves an answered call from the node that ran it (From) to
// the node that carries it on (To) after From stopped or left (sipstack's
// adoption). It applies only while the call is still From's, so of two
// nodes adopting one call the first wins and the other drops its copy,
// and a node that comes back does not take back a call another node
// adopted meanwhile. Applying it again changes nothing.
type AdoptCall struct {
	ID   string
	From string
	To   string
}

func (*AdoptCall) Type() Type { return TypeAdoptCall }

func (c *AdoptCall) apply(s *State) Result {
	if c.ID == "" || c.To == "" {
		return refuse(CodeInvalid, "id", "a call id and the adopting node are required")
	}
	old, ok := s.calls[c.ID]
	if !ok {
		return refuse(CodeNotFound, "id", "no call %s in progress", c.ID)
	}
	if old.Node == c.To {
		return callResult(old)
	}
	if old.ConnectAt == 0 {
		return refuse(CodeConflict, "id", "call %s is not answered: only answered calls are adopted", c.ID)
	}
	if old.Node != c.From {
		return refuse(CodeConflict, "from", "call %s runs on %s now, not %s", c.ID, old.Node, c.From)
	}
	call := old.clone()
	call.Node = c.To
	s.putCall(&call)
	return callResult(&call)
}
