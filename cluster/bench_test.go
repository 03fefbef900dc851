package cluster

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkProposeConcurrent measures Register proposals per second on a
// 3-node loopback cluster (real TCP, BoltDB fsync) with many concurrent
// proposers, through the leader and through a follower, with the cluster
// port in plaintext and with TLS. Each proposal is a REGISTER of one of 4
// phones of one of 256 accounts (new Call-ID each time), so bindings per
// account stay realistic.
//
//	go test ./cluster -run '^$' -bench ProposeConcurrent -benchtime 20000x
func BenchmarkProposeConcurrent(b *testing.B) {
	pki := newTestPKI(b)
	for _, tr := range []struct {
		name string
		tune func(*Config)
	}{{"plaintext", nil}, {"tls", pki.withTLS(b, true, true)}} {
		b.Run("port="+tr.name, func(b *testing.B) { benchPropose(b, tr.tune) })
	}
}

func benchPropose(b *testing.B, tune func(*Config)) {
	c, ctx, leader := newLedCluster(b, tune, time.Hour)
	const nAORs = 256
	aors := createAccounts(ctx, b, c.nodes[leader].node, "bench", nAORs)
	var seq atomic.Int64
	for _, via := range []struct {
		name string
		idx  int
	}{{"leader", leader}, {"follower", c.follower(leader)}} {
		for _, par := range []int{16, 128} {
			b.Run(fmt.Sprintf("via=%s/parallelism=%dxGOMAXPROCS", via.name, par), func(b *testing.B) {
				n := c.nodes[via.idx].node
				b.SetParallelism(par)
				b.ResetTimer()
				start := time.Now()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						s := int(seq.Add(1))
						if _, err := registerSlot(ctx, n, aors[s%nAORs], (s/nAORs)%4, s); err != nil {
							b.Error(err)
							return
						}
					}
				})
				b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "ops/s")
			})
		}
	}
}
