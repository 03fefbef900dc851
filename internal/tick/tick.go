// Package tick runs a function on a fixed period until told to stop: the
// loop of every background sampler and tuner (a ticker, a select on done,
// the call), written once.
package tick

import "time"

// Every calls f every period until done is closed; the first call is one
// period in.
func Every(done <-chan struct{}, period time.Duration, f func()) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		f()
	}
}
