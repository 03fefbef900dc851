package transport

import (
	"errors"
	"log/slog"

	"github.com/emiago/sipgo/sip"
)

// sipgo keeps two settings in package variables, shared by every stack of
// the process: the largest UDP message it sends, and the logger of the
// code paths that have no stack at hand (connection reference counts,
// lazy header parsing). ConfigureLibrary sets both, once per process,
// before any SIP server is created: node.Start calls it (through
// sipstack.ConfigureLibrary), and sipstack's own tests in TestMain.

// udpMaxDatagram is the largest UDP message sipgo may send. sipgo refuses
// (with ErrUDPMTUCongestion, and nothing on the wire) any UDP message
// larger than sip.UDPMTUSize-200, 1300 bytes by default, and does not
// switch to TCP; a 200 OK to a REGISTER lists every binding of the AOR and
// passes that easily. Responses must not vanish, so the limit is raised to
// the largest UDP payload and IP fragments what exceeds the path MTU, as
// other registrars do.
const udpMaxDatagram = 65507

// ConfigureLibrary raises sipgo's UDP size limit and points its
// package-level logger at log, quietly (see NewQuietHandler). Call it once
// per process, before starting a SIP server and from one goroutine: it
// writes variables sipgo reads without a lock. Calling it again (several
// nodes in one test process) points sipgo's logger at the latest log.
func ConfigureLibrary(log *slog.Logger) {
	sip.UDPMTUSize = udpMaxDatagram + 200
	sip.SetDefaultLogger(slog.New(NewQuietHandler(log.Handler(), nil, nil)))
}

// CheckLibrary reports whether ConfigureLibrary has run.
func CheckLibrary() error {
	if sip.UDPMTUSize < udpMaxDatagram+200 {
		return errors.New("sipgo is not configured: call sipstack.ConfigureLibrary once before creating a SIP server (it raises sipgo's UDP size limit, or large responses are dropped)")
	}
	return nil
}
