package admin

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"
)

// The HTTP server around the API: its timeouts and header limit, and TLS.

// Timeouts bound the admin API's connections (HTTPServer). A zero field
// takes its default.
type Timeouts struct {
	// ReadHeader bounds reading a request's line and headers. Default 10s.
	ReadHeader time.Duration
	// Read bounds reading a whole request, body included. Default 1m.
	Read time.Duration
	// Write bounds a request from the end of its headers to the end of
	// its answer. Default 2m.
	Write time.Duration
	// Idle bounds how long a keep-alive connection waits for its next
	// request. Default 2m.
	Idle time.Duration
}

// Default timeouts (Timeouts).
const (
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultReadTimeout       = time.Minute
	DefaultWriteTimeout      = 2 * time.Minute
	DefaultIdleTimeout       = 2 * time.Minute
)

// MaxHeaderBytes bounds a request's line and headers together.
const MaxHeaderBytes = 64 << 10

func (t Timeouts) withDefaults() Timeouts {
	def := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	def(&t.ReadHeader, DefaultReadHeaderTimeout)
	def(&t.Read, DefaultReadTimeout)
	def(&t.Write, DefaultWriteTimeout)
	def(&t.Idle, DefaultIdleTimeout)
	return t
}

// HTTPServer returns the http.Server that serves the API with the
// configured timeouts and header limit. With tlsConf (ServerTLS), serve it
// on a listener wrapped by tls.NewListener(ln, tlsConf).
//
// The read and write timeouts bound every request but the streamed ones,
// which lift them once their request is read: a drain (it waits for
// calls), an xDR export (it lasts as long as the data), and the profiles
// (a CPU profile lasts ?seconds=).
func (s *Server) HTTPServer() *http.Server {
	t := s.cfg.Timeouts
	return &http.Server{
		Handler:           s,
		ReadHeaderTimeout: t.ReadHeader,
		ReadTimeout:       t.Read,
		WriteTimeout:      t.Write,
		IdleTimeout:       t.Idle,
		MaxHeaderBytes:    MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.cfg.Logger.Handler(), slog.LevelInfo),
	}
}

// liftDeadlines removes the connection's read and write deadlines for a
// request that streams its answer (or waits long for it), once its body is
// read. Without it, the server's read timeout would also cancel the
// request's context (net/http reads ahead on the connection to notice a
// client that goes away, and that read times out too).
func liftDeadlines(w http.ResponseWriter) {
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{})
	_ = rc.SetWriteDeadline(time.Time{})
}

// streamed is h with the connection's deadlines lifted (liftDeadlines).
func streamed(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		liftDeadlines(w)
		h.ServeHTTP(w, r)
	})
}

// ServerTLS is the TLS configuration of the API: the certificate chain and
// key in PEM files, and, if clientCAFile is set, the CA certificates
// (PEM) that every client's certificate must be signed by. TLS 1.2 at
// least, HTTP/1.1. The errors name the file that is wrong.
func ServerTLS(certFile, keyFile, clientCAFile string) (*tls.Config, error) {
	if certFile == "" || keyFile == "" {
		return nil, errors.New("both a certificate and a key file are needed")
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("certificate %s and key %s: %w (both PEM; the certificate file may hold the chain after it)", certFile, keyFile, err)
	}
	conf := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		NextProtos:   []string{"http/1.1"},
	}
	if clientCAFile != "" {
		pool, err := loadCAs(clientCAFile)
		if err != nil {
			return nil, err
		}
		conf.ClientCAs = pool
		conf.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return conf, nil
}

// loadCAs reads a PEM file of CA certificates.
func loadCAs(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA file %s: no PEM certificate in it", file)
	}
	return pool, nil
}
