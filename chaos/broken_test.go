//go:build linux

package chaos

import (
	"context"
	"hash/fnv"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/troika-sip/troika/internal/sipptest"
	"github.com/troika-sip/troika/internal/testkit"
)

// Each checker fails against a deliberately broken build: a build tag
// compiles a tiny sabotage into the product (fsm/chaosbroken_set.go,
// fsm/chaosbroken_bank.go, cluster/chaosbroken_holder.go; normal builds
// compile it out), and a short experiment under the mixed workload must
// end with the matching checker failing and naming the damage:
//
//   - chaosbroken_set: the fsm acknowledges and never stores the bindings
//     of the accounts whose id hashes to 0 mod 1000 (ph0421 among the
//     phones): the set checker names exactly those accounts;
//   - chaosbroken_bank: a top-up sent again with its idempotency key (as
//     the workload does, as a client that lost the answer) moves the
//     money again: the bank checker finds the balances of the accounts
//     topped up off, and the sum of the money with them;
//   - chaosbroken_holder: the virtual IP's holder ignores its lease: cut
//     off from the others it keeps the address the majority gives to
//     another node, and the single-holder checker sees the virtual IP in
//     two namespaces.
func TestCheckersCatchBrokenBuilds(t *testing.T) {
	if testing.Short() {
		t.Skip("three chaos runs against deliberately broken builds: not with -short")
	}
	sipptest.Need(t)
	NeedRoot(t)
	for _, tc := range []struct {
		tag, scenario, checker string
		check                  func(t *testing.T, f Finding, x *Outcome)
	}{
		{tag: "chaosbroken_set", scenario: "kill-holder", checker: CheckSet, check: func(t *testing.T, f Finding, _ *Outcome) {
			var want []string // the broken build's rule
			for _, id := range phoneIDs(brokenPhones) {
				h := fnv.New32a()
				h.Write([]byte(id))
				if h.Sum32()%1000 == 0 {
					want = append(want, id)
				}
			}
			if len(want) == 0 {
				t.Fatalf("no phone id among %d hashes to 0 mod 1000: the broken build would drop nothing", brokenPhones)
			}
			if !slices.Equal(f.Subjects, want) {
				t.Errorf("the set checker names %v as missing bindings, want exactly the accounts the broken build drops: %v", f.Subjects, want)
			}
		}},
		{tag: "chaosbroken_bank", scenario: "kill-holder", checker: CheckBank, check: func(t *testing.T, f Finding, _ *Outcome) {
			for _, want := range []string{"caller-long", "caller-short", "callee1", "sum"} {
				if !slices.Contains(f.Subjects, want) {
					t.Errorf("the bank checker does not name %s (topped up, each top-up sent twice): %v", want, f.Subjects)
				}
			}
			if !slices.ContainsFunc(f.Details, func(d string) bool { return strings.Contains(d, "caller-long's balance is") }) {
				t.Errorf("the bank checker does not say what caller-long's balance should be:\n%s", strings.Join(f.Details, "\n"))
			}
		}},
		{tag: "chaosbroken_holder", scenario: "partition-holder", checker: CheckHolder, check: func(t *testing.T, f Finding, x *Outcome) {
			vip := x.VIP.String()
			if !slices.Contains(f.Subjects, vip) {
				t.Errorf("the single-holder checker names %v, want the virtual IP %s", f.Subjects, vip)
			}
		}},
	} {
		t.Run(tc.tag, func(t *testing.T) {
			bin, err := testkit.BinaryWithTags([]string{tc.tag})
			if err != nil {
				t.Fatal(err)
			}
			out := Run(context.Background(), t, Config{Scenario: tc.scenario, Duration: 30 * time.Second, Seed: 1, Binary: bin, Phones: brokenPhones, ExpectFailures: true})
			for _, f := range out.Findings {
				t.Logf("%s build, %s: %s ok=%v: %s", tc.tag, tc.scenario, f.Checker, f.OK, f.Summary)
			}
			f, ok := out.Finding(tc.checker)
			if !ok {
				t.Fatalf("no %s finding", tc.checker)
			}
			if f.OK {
				t.Fatalf("the %s checker passed against the %s build: %s", tc.checker, tc.tag, f.Summary)
			}
			tc.check(t, f, out)
		})
	}
}

// brokenPhones is the phones of the broken-build runs: ph0421 among them
// hashes to 0 mod 1000.
const brokenPhones = 500
