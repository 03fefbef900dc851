package admin

import (
	"net/http"

	"github.com/troika-sip/troika/fsm"
)

// resource is a kind of stored object that the API lists, reads, puts
// (create or replace) and deletes in the same way: tariffs, aliases,
// service policies, vendors, connections, and (but for their own create
// and update) accounts. A is its API shape, F its fsm one.
type resource[A, F any] struct {
	what string // as in "no tariff X"
	key  string // the path value naming one: "id" or "ip"
	all  func(*fsm.State) []F
	one  func(*fsm.State, string) (F, bool)
	view func(F) A
	// in, put: the body of POST, checked and converted, and the command
	// that stores it. Nil: POST is the resource's own handler.
	in  func(*A) (F, error)
	put func(F) fsm.Command
	// password, when set, gives the digest password fields of a body
	// (and of an answer): POST then checks or generates the password
	// (createWithPassword).
	password func(*A) passwordFields
	del      func(key string) fsm.Command
	// delGuard, when set, may refuse a DELETE (an error) before it is
	// written, and returns what to log once it is.
	delGuard func(s *Server, key string, r *http.Request) ([]any, error)
}

// handler is an API handler: an error it returns becomes the answer
// (authed maps it).
type handler func(w http.ResponseWriter, r *http.Request) error

// route serves the resource under path (such as "/tariffs"): GET path,
// POST path (when put is set), GET and DELETE path/{key}.
func (rs resource[A, F]) route(s *Server, v1 func(pattern string, h handler), path string) {
	one := path + "/{" + rs.key + "}"
	v1("GET "+path, func(w http.ResponseWriter, r *http.Request) error { return rs.list(s, w) })
	v1("GET "+one, func(w http.ResponseWriter, r *http.Request) error { return rs.get(s, w, r) })
	v1("DELETE "+one, func(w http.ResponseWriter, r *http.Request) error { return rs.delete(s, w, r) })
	switch {
	case rs.put != nil && rs.password != nil:
		v1("POST "+path, func(w http.ResponseWriter, r *http.Request) error { return rs.createWithPassword(s, w, r) })
	case rs.put != nil:
		v1("POST "+path, func(w http.ResponseWriter, r *http.Request) error { return rs.create(s, w, r) })
	}
}

func (rs resource[A, F]) list(s *Server, w http.ResponseWriter) error {
	out := []A{}
	for _, f := range rs.all(s.state) {
		out = append(out, rs.view(f))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (rs resource[A, F]) get(s *Server, w http.ResponseWriter, r *http.Request) error {
	f, ok := rs.one(s.state, r.PathValue(rs.key))
	if !ok {
		return notFound(rs.what, r.PathValue(rs.key))
	}
	writeJSON(w, http.StatusOK, rs.view(f))
	return nil
}

// create stores the body (replacing one with the same key) and answers
// 201 with it as stored.
func (rs resource[A, F]) create(s *Server, w http.ResponseWriter, r *http.Request) error {
	f, err := readBody(r, rs.in)
	if err != nil {
		return err
	}
	if _, err := s.propose(r, rs.put(f)); err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, rs.view(f))
	return nil
}

// passwordFields are the digest password fields of a vendor's or a
// connection's body.
type passwordFields struct {
	id, username string
	password     *string
	generate     bool
}

// createWithPassword is create for a resource with a digest password: its
// password (with a username only) passes the policy, its id and username
// being the user names it must not contain, or is generated and shown in
// the answer (the only answer that shows a password).
func (rs resource[A, F]) createWithPassword(s *Server, w http.ResponseWriter, r *http.Request) error {
	var in A
	if err := decode(r, &in); err != nil {
		return err
	}
	pf := rs.password(&in)
	gen, err := credentialPassword(pf.password, pf.generate, pf.username, pf.id)
	if err != nil {
		return invalid(err)
	}
	f, err := rs.in(&in)
	if err == nil && *pf.password != "" {
		err = CheckPassword(*pf.password, pf.id, pf.username)
	}
	if err != nil {
		return invalid(err)
	}
	if _, err := s.propose(r, rs.put(f)); err != nil {
		return err
	}
	out := rs.view(f)
	*rs.password(&out).password = gen
	writeJSON(w, http.StatusCreated, out)
	return nil
}

func (rs resource[A, F]) delete(s *Server, w http.ResponseWriter, r *http.Request) error {
	key := r.PathValue(rs.key)
	var logged []any
	if rs.delGuard != nil {
		var err error
		if logged, err = rs.delGuard(s, key, r); err != nil {
			return err
		}
	}
	if _, err := s.propose(r, rs.del(key)); err != nil {
		return err
	}
	if logged != nil {
		s.cfg.Logger.Info("audit: "+rs.what+" deleted", append(logged, "token", TokenName(r.Context()), "remote", r.RemoteAddr)...)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// readBody decodes a request's strict JSON body (decode) as an A and
// converts it with conv; a conversion error is a 400 naming the field.
func readBody[A, F any](r *http.Request, conv func(*A) (F, error)) (F, error) {
	var in A
	if err := decode(r, &in); err != nil {
		var zero F
		return zero, err
	}
	f, err := conv(&in)
	if err != nil {
		return f, invalid(err)
	}
	return f, nil
}
