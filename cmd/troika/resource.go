package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/troika-sip/troika/admin"
)

// table is how items of one kind print: with -o json the API's answer as
// it is, with -o table the header and the rows row adds for each item.
type table[T any] struct {
	header []string
	row    func(add func(cols ...any), item T)
}

// show prints v (the answer) as JSON, or items as a table.
func (tb table[T]) show(api *apiFlags, v any, items ...T) error {
	return show(api, v, tb.header, func(add func(cols ...any)) {
		for _, it := range items {
			tb.row(add, it)
		}
	})
}

// reading is the RunE of a command that reads a T from the node at --api
// with read and prints it with print.
func reading[T any](api *apiFlags, read func(*admin.Client, context.Context) (T, error), print func(T) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, _ []string) error {
		v, err := read(api.client(), cmd.Context())
		if err != nil {
			return err
		}
		return print(v)
	}
}

// resourceCmds makes the subcommands that every kind the API manages
// (accounts, tariffs, aliases, service policies, vendors, connections)
// has in the same shape: create or replace, get, list, delete.
type resourceCmds[T any] struct {
	api   *apiFlags
	what  string // as in "vendor X deleted"
	table table[T]
}

// showing prints what a create, get or update answered, or returns its
// error.
func (rc resourceCmds[T]) showing(out T, err error) error {
	if err != nil {
		return err
	}
	return rc.table.show(rc.api, out, out)
}

// showingPassword is showing, then the password the API generated for
// the item id (password: the answer's, "" when it generated none).
func (rc resourceCmds[T]) showingPassword(id string, out T, err error, password string) error {
	if err := rc.showing(out, err); err != nil {
		return err
	}
	showGenerated(rc.api, rc.what+" "+id, password)
	return nil
}

// put makes cmd (its use, help and flags, which fill *v) send *v with
// write and print the answer.
func (rc resourceCmds[T]) put(cmd *cobra.Command, v *T, write func(*admin.Client, context.Context, T) (T, error)) *cobra.Command {
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		return rc.showing(write(rc.api.client(), cmd.Context(), *v))
	}
	return cmd
}

// get is `get ID`.
func (rc resourceCmds[T]) get(short string, read func(*admin.Client, context.Context, string) (T, error)) *cobra.Command {
	return &cobra.Command{
		Use: "get ID", Short: short, Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return rc.showing(read(rc.api.client(), cmd.Context(), args[0]))
		},
	}
}

// list is `list`.
func (rc resourceCmds[T]) list(short string, read func(*admin.Client, context.Context) ([]T, error)) *cobra.Command {
	return &cobra.Command{
		Use: "list", Short: short, Args: cobra.NoArgs,
		RunE: reading(rc.api, read, func(out []T) error { return rc.table.show(rc.api, out, out...) }),
	}
}

// delete is `delete ARG` (ARG: ID, or IP for an alias).
func (rc resourceCmds[T]) delete(arg, short string, remove func(*admin.Client, context.Context, string) error) *cobra.Command {
	return &cobra.Command{
		Use: "delete " + arg, Short: short, Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := remove(rc.api.client(), cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Printf("%s %s deleted\n", rc.what, args[0])
			return nil
		},
	}
}

// listByAccount is `list [--account ID]`: the items read returns, of one
// account when --account is given.
func listByAccount[T any](api *apiFlags, short, accountHelp string, tb table[T], read func(*admin.Client, context.Context, string) ([]T, error)) *cobra.Command {
	var account string
	list := &cobra.Command{
		Use: "list", Short: short, Args: cobra.NoArgs,
		RunE: reading(api, func(c *admin.Client, ctx context.Context) ([]T, error) { return read(c, ctx, account) },
			func(out []T) error { return tb.show(api, out, out...) }),
	}
	list.Flags().StringVar(&account, "account", "", accountHelp)
	return list
}
