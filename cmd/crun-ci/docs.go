package main

import (
	"context"

	"github.com/crun-ci/crun-ci/cmdline"
	"github.com/spf13/pflag"
)

// program is crun-ci's command line: its global flags, its commands, and what its
// manual page says besides.
func (c *cli) program() *cmdline.Program {
	return &cmdline.Program{
		Name:  "crun-ci",
		About: "run Codeship Pro pipelines on containerd, without Docker",
		Description: "crun-ci reads codeship-services.yml and codeship-steps.yml and runs every step as " +
			"containerd tasks on fresh overlay snapshots, each on a network of its own, removing " +
			"everything after it. The README says what of the configuration it reads and how.",
		Global:   c.global,
		Commands: c.commands(),
		Stderr:   c.stderr,
		Setup:    c.setupLogging,
		RootWhy:  "it runs containers through containerd (whose socket is root's), mounts their file systems and makes their network namespaces; run it with sudo, or as root in the CI job (validate, encrypt and decrypt do not need it)",
		Sections: `.SH EXIT STATUS
0 every step that ran passed; 1 a step failed or timed out, or the build could not be
carried out; 2 bad configuration or usage, or a missing precondition; 128 + the signal
when interrupted (130 for SIGINT, 143 for SIGTERM).
.SH ENVIRONMENT
CRUNCI_ADDRESS, CONTAINERD_ADDRESS, CRUNCI_NAMESPACE, CRUNCI_STATE_DIR (the global
flags), CRUNCI_AES_KEY (the key of encrypted files), NO_COLOR.
`,
	}
}

// runCompletion is `crun-ci completion bash|zsh|fish`.
func runCompletion(c *cli, _ *pflag.FlagSet) runner {
	return func(_ context.Context, args []string) error {
		p := c.program()
		switch args[0] {
		case "bash":
			p.Bash(c.stdout)
		case "zsh":
			p.Zsh(c.stdout)
		case "fish":
			p.Fish(c.stdout)
		default:
			return usageError("completion: want bash, zsh or fish, got %q", args[0])
		}
		return nil
	}
}

// runMan is `crun-ci man`: crun-ci(1).
func runMan(c *cli, _ *pflag.FlagSet) runner {
	return func(context.Context, []string) error {
		c.program().Man(c.stdout)
		return nil
	}
}
