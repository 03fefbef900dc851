package sipstack

import "github.com/troika-sip/troika/sipstack/sipmsg"

// expiresFor returns the expiry in seconds for one contact: its own
// expires parameter, else the Expires header, else the default. tooBrief
// is set when it is below min and not 0 (423); values above max are
// clamped to max.
func expiresFor(c sipmsg.ContactSpec, header int, hasHeader bool, def, min, max int) (secs int, tooBrief bool) {
	secs = def
	switch {
	case c.HasExpires:
		secs = c.Expires
	case hasHeader:
		secs = header
	}
	if secs == 0 {
		return 0, false
	}
	if secs < min {
		return secs, true
	}
	if secs > max {
		secs = max
	}
	return secs, false
}
