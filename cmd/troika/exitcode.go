package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"

	"github.com/spf13/cobra"

	"github.com/troika-sip/troika/admin"
	"github.com/troika-sip/troika/fsm"
)

// Exit statuses of the troika command, for scripts (troika --help lists
// them).
const (
	exitError       = 1 // anything else
	exitUsage       = 2 // a bad command line: unknown command or flag, wrong arguments
	exitNotFound    = 3 // the node answered 404: no such account, tariff...
	exitConflict    = 4 // the node answered 409: exists, in use, holds money, drain refused
	exitUnavailable = 5 // the node cannot be reached, or answered 503 (no quorum, not confirmed)
	exitDenied      = 6 // the node answered 401 or 403: no token, wrong token, read-only token
	exitInvalid     = 7 // the node refused the input: 400, 413, 422
)

const exitCodesHelp = `Exit status: 0 done; 1 error; 2 bad command line; 3 not found; 4 conflict
(exists, in use, holds money, refused); 5 node unreachable or unavailable (no
quorum); 6 token missing, wrong or read-only; 7 input refused by the node.`

// usageError is a mistake in the command line.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// exitCode maps an error of a command to the exit status.
func exitCode(err error) int {
	var ue usageError
	var nq noQuorumError
	var ae *admin.APIError
	var oe *net.OpError
	var de *net.DNSError
	var be *fsm.BackupError
	switch {
	case errors.As(err, &ue) || isCobraUsage(err):
		return exitUsage
	case errors.As(err, &nq):
		return exitUnavailable
	case errors.As(err, &be): // a backup file the command refused itself
		return exitInvalid
	case errors.As(err, &ae):
		switch ae.Status {
		case http.StatusNotFound:
			return exitNotFound
		case http.StatusConflict:
			return exitConflict
		case http.StatusServiceUnavailable, http.StatusGatewayTimeout, http.StatusBadGateway:
			return exitUnavailable
		case http.StatusUnauthorized, http.StatusForbidden:
			return exitDenied
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnprocessableEntity:
			return exitInvalid
		}
	case errors.As(err, &oe), errors.As(err, &de), errors.Is(err, context.DeadlineExceeded):
		return exitUnavailable
	}
	return exitError
}

// isCobraUsage recognises the command-line errors cobra makes itself
// (it has no error types for them).
func isCobraUsage(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand flag", "required flag(s)",
		"if any flags in the group", "flag needs an argument", "invalid argument", "accepts ", "requires at least",
		"requires at most", "received "} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

// strictCommands makes every command that only groups subcommands fail
// on an unknown subcommand (cobra prints help and exits 0 otherwise), and
// marks command-line errors as usage errors.
func strictCommands(root *cobra.Command) {
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.HasSubCommands() && c.Run == nil && c.RunE == nil {
			c.Args = cobra.NoArgs
			c.RunE = func(cmd *cobra.Command, _ []string) error {
				return usageError{errors.New(cmd.CommandPath() + " needs a subcommand: " + subcommandNames(cmd) + " (see --help)")}
			}
		}
		if args := c.Args; args != nil {
			c.Args = func(cmd *cobra.Command, a []string) error {
				if err := args(cmd, a); err != nil {
					return usageError{err}
				}
				return nil
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

func subcommandNames(c *cobra.Command) string {
	var names []string
	for _, sub := range c.Commands() {
		if sub.IsAvailableCommand() {
			names = append(names, sub.Name())
		}
	}
	return strings.Join(names, ", ")
}
