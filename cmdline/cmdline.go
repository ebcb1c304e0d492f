// Package cmdline is a command line of subcommands over github.com/spf13/pflag, as a
// small cobra: a program's global flags, its commands with their own flags and the
// number of their arguments, `help [COMMAND]` and `--version`, usage errors that name
// the command or flag probably meant, and the manual page and shell completion made
// from the same definitions, so that they cannot drift.
package cmdline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/pflag"

	"github.com/crun-ci/crun-ci/config"
)

// Command is one command of the program.
type Command struct {
	// Name and Summary (a line) say what it is; Args is the usage of its arguments.
	Name, Summary, Args string
	NArgs               NArgs
	// Flags adds the command's own flags to fs and returns what runs it, once they are
	// parsed, with its arguments.
	Flags func(fs *pflag.FlagSet) Runner
	// Root says the command cannot work without root (Program.RootWhy says why).
	Root bool
}

// A Runner runs a command with its arguments.
type Runner func(ctx context.Context, args []string) error

// NArgs is how many arguments a command takes, from Min to Max (-1: any number), and
// what the usage error says otherwise.
type NArgs struct {
	Min, Max int
	Why      string
}

var (
	// None is no arguments, Any any number.
	None = NArgs{}
	Any  = NArgs{Max: -1}
)

// UsageError is a command line that cannot be run as written.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// Usagef is a *UsageError.
func Usagef(format string, args ...any) error {
	return &UsageError{fmt.Errorf(format, args...)}
}

// Program is a program of commands.
type Program struct {
	// Name is the program's; About a line on what it is, Description a paragraph, and
	// Sections the roff text of the manual page after COMMANDS.
	Name, About, Description, Sections string
	// Global are the flags of every command, before or after its name.
	Global   *pflag.FlagSet
	Commands []Command
	Stderr   io.Writer
	// Setup runs after a command's flags are parsed, before it (logging).
	Setup func() error
	// RootWhy says why a command with Root needs root.
	RootWhy string
}

// Run runs the command that args name, with its flags and arguments: `--version` runs
// the command named version; `help [COMMAND]` prints the usage.
func (p *Program) Run(ctx context.Context, args []string) error {
	fs := p.Global
	fs.SetOutput(p.Stderr)
	fs.SetInterspersed(false)
	fs.Usage = func() {
		fmt.Fprintf(p.Stderr, "usage: %s [global flags] COMMAND [flags] [args]\n\nCommands:\n", p.Name)
		for _, c := range p.Commands {
			fmt.Fprintf(p.Stderr, "  %-10s %s\n", c.Name, c.Summary)
		}
		fmt.Fprint(p.Stderr, "\nGlobal flags:\n")
		fs.PrintDefaults()
	}
	version := fs.Bool("version", false, "print the version")
	if err := fs.Parse(args); err != nil {
		return parseError(fs, err)
	}
	name, rest := fs.Arg(0), fs.Args()
	switch {
	case *version:
		name, rest = "version", nil
	case fs.NArg() == 0:
		fs.Usage()
		return Usagef("no command given")
	case name == "help" && len(rest) > 1:
		name, rest = rest[1], []string{"--help"} // help COMMAND
	default:
		rest = rest[1:]
	}
	var names []string
	for _, c := range p.Commands {
		if c.Name == name {
			return p.run(ctx, c, rest)
		}
		names = append(names, c.Name)
	}
	if name == "help" {
		fs.Usage()
		return nil
	}
	return Usagef("unknown command %q%s (want %s or %s)", name, config.Suggest(name, names), strings.Join(names[:len(names)-1], ", "), names[len(names)-1])
}

// run parses the command's flags (the global ones may be given again among them), runs
// Setup, checks root and the number of its arguments, and runs it.
func (p *Program) run(ctx context.Context, c Command, args []string) error {
	fs := pflag.NewFlagSet(c.Name, pflag.ContinueOnError)
	fs.SetOutput(p.Stderr)
	fs.AddFlagSet(p.Global)
	fs.Usage = func() {
		fmt.Fprintf(p.Stderr, "usage: %s %s [flags]%s\n\nFlags:\n", p.Name, c.Name, c.Args)
		fs.PrintDefaults()
	}
	r := c.Flags(fs)
	if err := fs.Parse(args); err != nil {
		return parseError(fs, err)
	}
	if p.Setup != nil {
		if err := p.Setup(); err != nil {
			return err
		}
	}
	if c.Root && os.Geteuid() != 0 {
		return Usagef("%s needs root: %s", c.Name, p.RootWhy)
	}
	n := c.NArgs
	switch args = fs.Args(); {
	case n.Max == 0 && len(args) > 0:
		return Usagef("%s takes no arguments, got %q", c.Name, args)
	case n.Min == n.Max && len(args) != n.Min:
		return Usagef("%s: %s, got %d arguments", c.Name, n.Why, len(args))
	case len(args) < n.Min:
		return Usagef("%s: %s", c.Name, n.Why)
	}
	return r(ctx, args)
}

// parseError is the error of a flag set that did not parse: none for --help (its usage
// is printed), else a usage error, with the flag meant when an unknown one is close to
// one.
func parseError(fs *pflag.FlagSet, err error) error {
	if errors.Is(err, pflag.ErrHelp) {
		return nil
	}
	if name, ok := strings.CutPrefix(err.Error(), "unknown flag: --"); ok {
		var known []string
		fs.VisitAll(func(f *pflag.Flag) { known = append(known, f.Name) })
		if s := config.Suggest(name, known); s != "" {
			return Usagef("%w%s", err, strings.Replace(s, `"`, `"--`, 1))
		}
	}
	return Usagef("%w", err)
}

// CommandFlags are a command's own flags, for its documentation.
func CommandFlags(c Command) *pflag.FlagSet {
	fs := pflag.NewFlagSet(c.Name, pflag.ContinueOnError)
	c.Flags(fs)
	return fs
}
