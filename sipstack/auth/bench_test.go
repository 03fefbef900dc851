package auth

import (
	"net/netip"
	"testing"
	"time"
)

// BenchmarkNonce: minting a nonce (each 401 and 407) and checking one
// (each request with credentials). Run with
//
//	go test ./sipstack/auth -run '^$' -bench . -benchmem
func BenchmarkNonce(b *testing.B) {
	t0 := time.UnixMilli(1_700_000_000_000)
	bind := Binding{Source: netip.MustParseAddr("192.0.2.7"), CallID: "1-4242@192.0.2.7", FromTag: "4242SIPpTag001"}
	var mp macPool // as an Authenticator keeps it
	b.Run("mint", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			mp.mint(testSecret, "troika", bind, t0)
		}
	})
	n := MintNonce(testSecret, "troika", bind, t0)
	b.Run("check", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if st, _, _ := mp.check(testSecret, "troika", n, bind, t0, time.Minute); st != nonceValid {
				b.Fatal(st)
			}
		}
	})
}
