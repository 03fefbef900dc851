package admin

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// A progress stream is the text/plain answer of a long operation (a drain,
// a snapshot restore): one line per step or measurement, as it happens,
// then a final line, either the operation's success prefix and its
// summary, or progressErrorPrefix and what stopped it.

// progressErrorPrefix begins the final line of an operation that stopped.
const progressErrorPrefix = "error: "

// startProgress answers 200 with a progress stream and returns the
// function that writes one line of it, flushed at once.
func startProgress(w http.ResponseWriter) (write func(line string)) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	return func(line string) {
		// One line per write: a line break inside a message would be
		// read as a new line by the client.
		line = strings.ReplaceAll(line, "\n", " ")
		if _, err := io.WriteString(w, line+"\n"); err == nil {
			_ = rc.Flush()
		}
	}
}

// progressStream is how a client reads the progress stream of one kind
// of operation.
type progressStream struct {
	what       string                 // the operation, in messages: "drain"
	donePrefix string                 // begins the final line of a success
	stopped    func(msg string) error // the error of a final error line
	// The end of the messages when the stream ends without a final
	// line: leftHint when ctx ended it, cutHint when the connection did.
	leftHint, cutHint string
}

// follow reads a progress stream from body, calling line (when not nil)
// with each line before the final one. It returns the summary of a
// success, the stopped error of a failure, or, when the stream ends
// without a final line, an error saying whether ctx or the connection
// ended it and what to do.
func (p progressStream) follow(ctx context.Context, body io.Reader, line func(string)) (string, error) {
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if s, ok := strings.CutPrefix(l, p.donePrefix); ok {
			return s, nil
		}
		if m, ok := strings.CutPrefix(l, progressErrorPrefix); ok {
			return "", p.stopped(m)
		}
		if line != nil {
			line(l)
		}
	}
	err := sc.Err()
	if err == nil {
		err = io.ErrUnexpectedEOF
	}
	if ctx.Err() != nil {
		return "", fmt.Errorf("stopped following the %s (%w); %s", p.what, ctx.Err(), p.leftHint)
	}
	return "", fmt.Errorf("the connection ended before the %s finished (%v): %s", p.what, err, p.cutHint)
}
