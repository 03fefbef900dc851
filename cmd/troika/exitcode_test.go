package main

import (
	"errors"
	"os/exec"
	"testing"
)

// Scripts tell outcomes apart by the exit status (troika --help lists
// them).
func TestExitCodes(t *testing.T) {
	api, _ := policyNode(t)
	cases := []struct {
		name string
		args []string
		want int
	}{
		{"done", []string{"account", "get", "44123"}, 0},
		{"unknown subcommand", []string{"account", "frobnicate"}, exitUsage},
		{"group without subcommand", []string{"account"}, exitUsage},
		{"missing argument", []string{"account", "get"}, exitUsage},
		{"unknown flag", []string{"account", "list", "--colour"}, exitUsage},
		{"not found", []string{"account", "get", "9999"}, exitNotFound},
		{"conflict: the account exists", []string{"account", "create", "--id", "44123", "--generate-password"}, exitConflict},
		{"input refused by the node", []string{"account", "create", "--id", "7777", "--password", "short"}, exitInvalid},
	}
	for _, c := range cases {
		_, err := runInProc(t, api, c.args...)
		got := 0
		if err != nil {
			got = exitCode(err)
		}
		if got != c.want {
			t.Errorf("%s (%v): exit %d (%v), want %d", c.name, c.args, got, err, c.want)
		}
	}
	// The same through the process, with a node that is not there and a
	// wrong token.
	for _, c := range []struct {
		env  []string
		args []string
		want int
	}{
		{[]string{"TROIKA_API=http://127.0.0.1:1", "TROIKA_TOKEN=whatever-token-123456"}, []string{"account", "list"}, exitUnavailable},
		{[]string{"TROIKA_API=" + api, "TROIKA_TOKEN=not-the-token-123456"}, []string{"account", "list"}, exitDenied},
		{nil, []string{"no-such-command"}, exitUsage},
	} {
		cmd := exec.Command(troikaBin, c.args...)
		cmd.Env = c.env
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != c.want {
			t.Errorf("troika %v with %v: %v, want exit status %d", c.args, c.env, err, c.want)
		}
	}
}
