package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/troika-sip/troika/admin"
	"github.com/troika-sip/troika/fsm"
	"github.com/troika-sip/troika/internal/testkit"
)

// passwordFile writes password to a private file and returns its path.
func passwordFile(t *testing.T, password string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(path, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// runInProcIO is runInProc with stdin, returning stderr too.
func runInProcIO(t *testing.T, api string, stdin io.Reader, args ...string) (string, string, error) {
	t.Helper()
	tokenFile := passwordFile(t, testToken)
	return runRootIO(t, stdin, append([]string{"--api", api, "--token-file", tokenFile}, args...)...)
}

// stores reports whether account id's stored credentials are those of
// password.
func stores(st *fsm.State, id, password string) bool {
	a, _ := st.Account(id)
	return reflect.DeepEqual(a.Credentials, testkit.Creds(id, password))
}

// Every way to give an account's password: a file, standard input, an
// environment variable, generated (printed once), and --password (which
// warns); a weak one is refused naming the rule; none at all, with no
// terminal to ask on, says which flags to use.
func TestCLIAccountPasswords(t *testing.T) {
	api, st := policyNode(t)
	if _, err := runInProc(t, api, "account", "create", "--id", "5001", "--password-file", passwordFile(t, "File-pass-51")); err != nil ||
		!stores(st, "5001", "File-pass-51") {
		t.Fatalf("--password-file: %v", err)
	}
	if _, _, err := runInProcIO(t, api, strings.NewReader("Stdin-pass-52\r\nignored\n"), "account", "create", "--id", "5002", "--password-file", "-"); err != nil ||
		!stores(st, "5002", "Stdin-pass-52") {
		t.Fatalf("--password-file -: %v", err)
	}
	t.Setenv("TROIKA_TEST_PW", "Env-pass-53x")
	if _, err := runInProc(t, api, "account", "create", "--id", "5003", "--password-env", "TROIKA_TEST_PW"); err != nil ||
		!stores(st, "5003", "Env-pass-53x") {
		t.Fatalf("--password-env: %v", err)
	}
	_, stderr, err := runInProcIO(t, api, strings.NewReader(""), "account", "create", "--id", "5004", "--password", "Argv-pass-54")
	if err != nil || !stores(st, "5004", "Argv-pass-54") || !strings.Contains(stderr, "warning: --password is visible to other users") {
		t.Fatalf("--password: %v, stderr %q", err, stderr)
	}
	out, err := runInProc(t, api, "account", "create", "--id", "5005", "--generate-password")
	m := regexp.MustCompile(`generated password of account 5005: (\S+)\n`).FindStringSubmatch(out)
	if err != nil || m == nil || len(m[1]) != admin.GeneratedPasswordLength || !stores(st, "5005", m[1]) {
		t.Fatalf("--generate-password: %v\n%s", err, out)
	}
	out, err = runInProc(t, api, "-o", "json", "account", "update", "5005", "--generate-password")
	var a admin.Account
	if err != nil || json.Unmarshal([]byte(out), &a) != nil || a.Password == m[1] || !stores(st, "5005", a.Password) {
		t.Fatalf("update --generate-password -o json: %v\n%s", err, out)
	}
	if _, err := runInProc(t, api, "account", "update", "5005", "--password-file", passwordFile(t, "New-pass-555")); err != nil ||
		!stores(st, "5005", "New-pass-555") {
		t.Fatalf("update --password-file: %v", err)
	}
	if _, err := runInProc(t, api, "account", "update", "5005", "--max-calls", "2"); err != nil || !stores(st, "5005", "New-pass-555") {
		t.Fatalf("an update without a password flag changed the password: %v", err)
	}

	before := st.Counts()
	_, err = runInProc(t, api, "account", "create", "--id", "5006", "--password-file", passwordFile(t, "short"))
	wantErr(t, err, "400", "password: too short", "3 of the 4 classes")
	_, err = runInProc(t, api, "account", "create", "--id", "5006")
	wantErr(t, err, "SIP password for account 5006", "--password-file FILE, --password-env VAR or --generate-password", "terminal")
	_, err = runInProc(t, api, "account", "create", "--id", "5006", "--password-env", "TROIKA_TEST_UNSET")
	wantErr(t, err, "--password-env TROIKA_TEST_UNSET", "not set")
	_, err = runInProc(t, api, "account", "create", "--id", "5006", "--password-file", passwordFile(t, ""))
	wantErr(t, err, "the first line is empty")
	_, err = runInProc(t, api, "account", "create", "--id", "5006", "--generate-password", "--password-env", "TROIKA_TEST_PW")
	wantErr(t, err, "none of the others can be")
	if st.Counts() != before {
		t.Fatalf("refused creates changed the state: %v", st.Counts())
	}
}

// Vendors and connections take their password the same ways.
func TestCLIVendorAndConnectionPasswords(t *testing.T) {
	api, st := policyNode(t)
	out, err := runInProc(t, api, "vendor", "create", "--id", "carrier1", "--username", "carrier1", "--generate-password")
	m := regexp.MustCompile(`generated password of vendor carrier1: (\S+)\n`).FindStringSubmatch(out)
	if v, _ := st.Vendor("carrier1"); err != nil || m == nil || !reflect.DeepEqual(v.Credentials, testkit.Creds("carrier1", m[1])) {
		t.Fatalf("vendor --generate-password: %v\n%s", err, out)
	}
	_, err = runInProc(t, api, "vendor", "create", "--id", "carrier1", "--username", "carrier1", "--password-file", passwordFile(t, "carrier1-Pass"))
	wantErr(t, err, "400", `must not contain the user name "carrier1"`)
	if _, err := runInProc(t, api, "vendor", "create", "--id", "carrier2"); err != nil {
		t.Fatalf("a vendor without credentials: %v", err)
	}
	if _, err := runInProc(t, api, "connection", "create", "--id", "c1", "--vendor", "carrier1", "--username", "c1user", "--tariff", "cost",
		"--password-file", passwordFile(t, "Conn-pass-123")); err != nil {
		t.Fatalf("connection --password-file: %v", err)
	}
	if c, _ := st.Connection("c1"); !reflect.DeepEqual(c.Credentials, testkit.Creds("c1user", "Conn-pass-123")) {
		t.Fatalf("connection credentials %+v", c.Credentials)
	}
	_, err = runInProc(t, api, "connection", "create", "--id", "c2", "--vendor", "carrier1", "--username", "c2user", "--tariff", "cost",
		"--password-file", passwordFile(t, "weak"))
	wantErr(t, err, "400", "too short")
	_, err = runInProc(t, api, "connection", "create", "--id", "c2", "--vendor", "carrier1", "--username", "c2user", "--tariff", "cost")
	wantErr(t, err, "SIP password for connection user c2user", "--password-file")
	_, err = runInProc(t, api, "connection", "create", "--id", "c2", "--vendor", "carrier1", "--remote-ip", "192.0.2.7", "--tariff", "cost",
		"--generate-password")
	wantErr(t, err, "400", "generate_password: only with a username")
	if n := st.Counts().Connections; n != 1 {
		t.Fatalf("%d connections stored, want 1", n)
	}
}

// account import checks every line's password and names the lines it
// refuses; nothing is sent from the first of them on. An API refusal of
// one account names its line too.
func TestCLIImportChecksPasswords(t *testing.T) {
	api, st := policyNode(t)
	csv := filepath.Join(t.TempDir(), "accounts.csv")
	os.WriteFile(csv, []byte("# id,password\n6001,Import-pass-1\n6002,weak\n\n6003,x-6003-Secret\n6004,Import-pass-4\n"), 0o600)
	_, err := runInProc(t, api, "account", "import", "--batch", "1", csv)
	wantErr(t, err, "2 lines have a password that is not", "line 3 (account 6002): password: too short",
		`line 5 (account 6003): password: must not contain the user name "6003"`, "the 1 accounts before the first of them were created")
	if _, ok := st.Account("6001"); !ok {
		t.Fatal("the account before the refused line was not imported")
	}
	if _, ok := st.Account("6004"); ok {
		t.Fatal("an account after a refused line was imported")
	}
	os.WriteFile(csv, []byte("6005,Import-pass-5\n44123,Import-pass-6\n"), 0o600) // 44123 exists with another password
	_, err = runInProc(t, api, "account", "import", csv)
	wantErr(t, err, "line 2 (account 44123)", "409")

	// A header line is not an account named "id".
	os.WriteFile(csv, []byte("id,password,billing\n6007,Import-pass-7,prepaid\n"), 0o600)
	_, err = runInProc(t, api, "account", "import", csv)
	wantErr(t, err, "line 1 looks like a header", "--header")
	if _, ok := st.Account("6007"); ok {
		t.Fatal("an import refused for its header created an account")
	}
	if _, err := runInProc(t, api, "account", "import", "--header", csv); err != nil {
		t.Fatal(err)
	}
	if _, ok := st.Account("id"); ok {
		t.Fatal("the header line was imported as account \"id\"")
	}
	if _, ok := st.Account("6007"); !ok {
		t.Fatal("the account after the header was not imported")
	}
}

// With no password flag on a terminal, account create asks twice without
// echo; two different answers change nothing.
func TestCLIPasswordPrompt(t *testing.T) {
	api, st := policyNode(t)
	for _, tc := range []struct{ typed, want string }{{"Typed-pass-77\nTyped-pass-77\n", "Typed-pass-77"}, {"Typed-pass-77\nTyped-pass-78\n", ""}} {
		master, slave := openPTY(t)
		if _, err := io.WriteString(master, tc.typed); err != nil {
			t.Fatal(err)
		}
		go io.Copy(io.Discard, master) // the terminal's echo of what was typed before the prompt
		_, stderr, err := runInProcIO(t, api, slave, "account", "create", "--id", "7001")
		if _, created := st.Account("7001"); created != (tc.want != "") || created && !stores(st, "7001", tc.want) {
			t.Fatalf("typed %q: created %v (%v), stderr %q", tc.typed, created, err, stderr)
		}
		if !strings.Contains(stderr, "SIP password for account 7001: ") || !strings.Contains(stderr, "again: ") {
			t.Fatalf("prompts: %q", stderr)
		}
		if tc.want == "" && (err == nil || !strings.Contains(err.Error(), "differ")) {
			t.Fatalf("different answers: %v", err)
		}
		if tc.want != "" {
			if _, err := runInProc(t, api, "account", "delete", "7001"); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// openPTY opens a pseudo-terminal: what is written to master is typed on
// slave. It skips the test where the system has none.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	t.Cleanup(func() { master.Close() })
	if err := unix.IoctlSetPointerInt(int(master.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Skipf("unlock the pseudo-terminal: %v", err)
	}
	n, err := unix.IoctlGetUint32(int(master.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Skipf("pseudo-terminal number: %v", err)
	}
	slave, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("open the pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { slave.Close() })
	return master, slave
}
