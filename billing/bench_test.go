package billing

import (
	"fmt"
	"testing"
)

// BenchmarkRating: what rating a call costs, at setup (the longest prefix
// of a 1,000-rate tariff, the reservation's duration for a budget) and at
// its end (the charge). Run with
//
//	go test ./billing -run '^$' -bench . -benchmem
func BenchmarkRating(b *testing.B) {
	rates := []Rate{{Prefix: "", PerMinute: 60_000, ConnectFee: 10_000, FirstInterval: 1, NextInterval: 1}}
	for i := range 999 {
		rates = append(rates, Rate{Prefix: fmt.Sprintf("44%d", 100+i), PerMinute: int64(1000 + i), FirstInterval: 60, NextInterval: 6})
	}
	b.Run("lookup", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := Lookup(rates, "+445501234567"); err != nil {
				b.Fatal(err)
			}
		}
	})
	r := rates[455]
	b.Run("max-duration", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if r.MaxDuration(1_000_000_000, 300) == 0 {
				b.Fatal("nothing paid")
			}
		}
	})
	b.Run("charge", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if r.Charge(187) == 0 {
				b.Fatal("free")
			}
		}
	})
}
