package node

import (
	"context"
	"crypto/rand"
	"fmt"
	"time"

	"github.com/troika-sip/troika/fsm"
	"github.com/troika-sip/troika/internal/retry"
)

// The leader's housekeeping: the cluster's digest-nonce secret, the
// addresses' placement (vip.go), purging expired bindings, ending calls no
// node ended, and bounding the stored xDRs and idempotency keys.

// purgeEvery is how often the leader removes expired bindings.
const purgeEvery = 30 * time.Second

// trimEvery is how often the leader bounds the stored xDRs and idempotency
// keys ([billing] xdr_retention_count and idempotency_window).
const trimEvery = 5 * time.Minute

// secretRetry paces the new leader's attempts to store the nonce secret.
var secretRetry = retry.Policy{Initial: time.Second, Max: 5 * time.Second}

// leaderDuties runs while this node leads: it makes sure the cluster has a
// digest-nonce secret, purges expired bindings, and trims old xDRs and
// idempotency keys.
func (n *Node) leaderDuties(ctx context.Context) {
	go n.placeAddresses(ctx)
	go n.secureCredentials(ctx)
	backoff := secretRetry.New()
	for n.state.NonceSecret() == nil {
		secret := make([]byte, 32)
		rand.Read(secret)
		if _, err := n.cluster.Propose(ctx, &fsm.InitNonceSecret{Secret: secret}); err != nil {
			n.log.Error("could not store the cluster's nonce secret; REGISTERs get 503 until it is stored; retrying",
				"error", err, "retry_in", backoff.Next())
			if !backoff.Wait(ctx.Done()) {
				return
			}
		}
	}
	t := time.NewTicker(purgeEvery)
	defer t.Stop()
	trim := time.NewTicker(trimEvery)
	defer trim.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-trim.C:
			res, err := n.cluster.Propose(ctx, trimCommand(n.cfg.Billing, now))
			if err == nil && res.Err != nil {
				err = res.Err
			}
			if err != nil {
				n.log.Warn("trimming xDRs and idempotency keys failed; retrying next tick", "error", err)
			} else if res.Purged > 0 {
				n.log.Info("dropped the oldest xDRs beyond billing.xdr_retention_count", "count", res.Purged,
					"retained", n.cfg.Billing.XDRRetentionCount)
			}
		case now := <-t.C:
			res, err := n.cluster.Propose(ctx, &fsm.PurgeExpired{Now: now.UnixMilli()})
			if err != nil {
				n.log.Warn("purge of expired bindings failed; retrying next tick", "error", err)
			} else if res.Purged > 0 {
				n.log.Info("purged expired bindings", "count", res.Purged)
			}
			n.reapStaleCalls(ctx, now)
		}
	}
}

// reapGrace is how long past its latest possible end a call in the state
// must be before the leader ends it.
const reapGrace = 2 * time.Minute

// reapStaleCalls ends calls no node ended: a call still ringing long after
// the ring timeout, or answered and past the longest time its reservation
// pays for. Their node stopped without ending them (killed, or a lost
// write) and no node adopted them. The xDR says so; an answered call is
// charged up to the time it was authorized for, which is when it ended at
// the latest, and the rest of its reservation is released. A call
// reserved by chunks pays only through its last chunk (the node running
// it reserves the next one before that runs out, and an adopter goes on
// doing so), so a call whose node vanished is ended, and its money
// released, within a chunk and reapGrace, not at the longest call the
// switch allows.
func (n *Node) reapStaleCalls(ctx context.Context, now time.Time) {
	for _, c := range staleCalls(n.state.Calls(), now, n.cfg.SIP.RingTimeout) {
		res, err := n.cluster.Propose(ctx, c)
		if err == nil && res.Err != nil {
			err = res.Err
		}
		if err != nil {
			n.log.Warn("ending a stale call failed; retrying next tick", "call_id", c.ID, "error", err)
			continue
		}
		n.log.Warn("ended a call no node ended (its node stopped?)", "call_id", c.ID, "disconnect_at", time.UnixMilli(c.DisconnectAt).UTC(),
			"cause", c.CauseText)
	}
}

// staleCalls returns the EndCall commands for calls past their latest
// possible end by more than reapGrace.
func staleCalls(calls []fsm.Call, now time.Time, ringTimeout time.Duration) []*fsm.EndCall {
	var out []*fsm.EndCall
	for _, c := range calls {
		if c.ConnectAt == 0 {
			latest := c.SetupAt + ringTimeout.Milliseconds()
			if now.UnixMilli() > latest+reapGrace.Milliseconds() {
				out = append(out, &fsm.EndCall{ID: c.ID, DisconnectAt: latest, Cause: 408,
					CauseText: "reaped: never answered and no node ended it", DisconnectedBy: "system"})
			}
			continue
		}
		latest := c.ConnectAt + int64(c.MaxDuration)*1000
		if now.UnixMilli() > latest+reapGrace.Milliseconds() {
			out = append(out, &fsm.EndCall{ID: c.ID, DisconnectAt: latest, Cause: 200,
				CauseText: "reaped: no node ended it; charged to its authorized maximum", DisconnectedBy: "system"})
		}
	}
	return out
}

// trimCommand is the leader's periodic TrimRecords: keep the newest
// xdr_retention_count xDRs and the idempotency keys of the last
// idempotency_window. Zero settings (a Config not from LoadConfig) take
// the defaults.
func trimCommand(b BillingConfig, now time.Time) *fsm.TrimRecords {
	keep, window := b.XDRRetentionCount, b.IdempotencyWindow
	if keep <= 0 {
		keep = DefaultXDRRetention
	}
	if window <= 0 {
		window = DefaultIdempotencyWindow
	}
	return &fsm.TrimRecords{MaxXDRs: keep, KeepKeysAfter: now.Add(-window).UnixMilli()}
}

// secureCredentials runs while this node leads: once every voter stores
// credentials rather than passwords (a rolling upgrade from a build that
// stored passwords is over), it records the cluster's realm and replaces
// every clear password the state still holds (records written by that
// build) with its digest credentials. It looks every 10 s until nothing is
// left, then every 10 minutes.
func (n *Node) secureCredentials(ctx context.Context) {
	every := secureLookEvery
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		done, err := n.secureOnce(ctx)
		switch {
		case err != nil:
			n.log.Warn("could not secure stored passwords yet; retrying", "error", err, "retry_in", secureLookEvery)
			every = secureLookEvery
		case done:
			every = secureIdleEvery
		}
		t.Reset(every)
	}
}

const (
	secureLookEvery = 10 * time.Second
	secureIdleEvery = 10 * time.Minute
	secureBatch     = 1000 // records per SecureCredentials
)

// secureOnce does one round of secureCredentials: true when nothing is left.
func (n *Node) secureOnce(ctx context.Context) (bool, error) {
	if !n.credentialsThroughLog() {
		return false, nil
	}
	realm := n.cfg.Registrar.Realm
	if n.state.Realm() == "" {
		res, err := n.cluster.Propose(ctx, &fsm.InitRealm{Realm: realm})
		if err == nil && res.Err != nil {
			err = res.Err
		}
		if err != nil {
			return false, fmt.Errorf("record the realm: %w", err)
		}
	}
	if r := n.state.Realm(); r != realm {
		return false, fmt.Errorf("registrar.realm %q differs from the realm %q the cluster's credentials are made for: set registrar.realm = %q on every node", realm, r, r)
	}
	legacy := n.state.LegacySecrets()
	if len(legacy) == 0 {
		return true, nil
	}
	for len(legacy) > 0 {
		k := min(len(legacy), secureBatch)
		res, err := n.cluster.Propose(ctx, fsm.SecureLegacy(realm, legacy[:k]))
		if err == nil && res.Err != nil {
			err = res.Err
		}
		if err != nil {
			return false, fmt.Errorf("secure stored passwords: %w", err)
		}
		n.log.Info("replaced stored clear passwords with digest credentials", "records", k)
		legacy = legacy[k:]
	}
	return len(n.state.LegacySecrets()) == 0, nil
}
