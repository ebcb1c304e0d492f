package cmdline

import (
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/spf13/pflag"
)

func flagNames(fs *pflag.FlagSet) []string {
	var names []string
	fs.VisitAll(func(f *pflag.Flag) {
		if !f.Hidden {
			names = append(names, "--"+f.Name)
		}
	})
	sort.Strings(names)
	return names
}

// Bash writes the program's bash completion: its commands, then each command's flags
// and file names. zsh reads it through bashcompinit (see Zsh).
func (p Program) Bash(w io.Writer) {
	fn := "_" + strings.ReplaceAll(p.Name, "-", "_")
	var names []string
	for _, c := range p.Commands {
		names = append(names, c.Name)
	}
	global := strings.Join(flagNames(p.Global), " ")
	fmt.Fprintf(w, `# bash completion of %[1]s (%[1]s completion bash)
%[2]s() {
	local cur=${COMP_WORDS[COMP_CWORD]} cmd= w
	for w in "${COMP_WORDS[@]:1:COMP_CWORD-1}"; do
		case $w in -*) ;; *) cmd=$w; break ;; esac
	done
	local words
	case $cmd in
	"") words="%[3]s %[4]s" ;;
`, p.Name, fn, strings.Join(names, " "), global)
	for _, c := range p.Commands {
		fmt.Fprintf(w, "\t%s) words=\"%s %s\" ;;\n", c.Name, strings.Join(flagNames(CommandFlags(c)), " "), global)
	}
	fmt.Fprintf(w, `	esac
	if [[ $cur == -* || -z $cmd ]]; then
		COMPREPLY=($(compgen -W "$words" -- "$cur"))
	else
		COMPREPLY=($(compgen -f -- "$cur"))
	fi
}
complete -o filenames -F %s %s
`, fn, p.Name)
}

// Zsh writes the program's zsh completion: the bash one, through bashcompinit.
func (p Program) Zsh(w io.Writer) {
	fmt.Fprintf(w, "#compdef %s\nautoload -U +X bashcompinit && bashcompinit\n", p.Name)
	p.Bash(w)
}

// Fish writes the program's fish completion.
func (p Program) Fish(w io.Writer) {
	fmt.Fprintf(w, "# fish completion of %[1]s (%[1]s completion fish)\n", p.Name)
	quote := func(s string) string { return "'" + strings.ReplaceAll(s, "'", `\'`) + "'" }
	for _, c := range p.Commands {
		fmt.Fprintf(w, "complete -c %s -f -n __fish_use_subcommand -a %s -d %s\n", p.Name, c.Name, quote(c.Summary))
	}
	p.Global.VisitAll(func(f *pflag.Flag) {
		fmt.Fprintf(w, "complete -c %s -l %s -d %s\n", p.Name, f.Name, quote(f.Usage))
	})
	for _, c := range p.Commands {
		CommandFlags(c).VisitAll(func(f *pflag.Flag) {
			fmt.Fprintf(w, "complete -c %s -n '__fish_seen_subcommand_from %s' -l %s -d %s\n", p.Name, c.Name, f.Name, quote(f.Usage))
		})
	}
}

// Man writes the program's manual page, section 1, in roff.
func (p Program) Man(out io.Writer) {
	w := &roff{w: out}
	esc := strings.NewReplacer(`\`, `\\`, "-", `\-`, "'", `\(aq`)
	fmt.Fprintf(w, ".TH %s 1 \"\" \"%s\" \"User Commands\"\n.SH NAME\n%s \\- %s\n", strings.ToUpper(esc.Replace(p.Name)), esc.Replace(p.Name), esc.Replace(p.Name), esc.Replace(p.About))
	fmt.Fprintf(w, ".SH SYNOPSIS\n.B %s\n[\\fIglobal flags\\fR] \\fICOMMAND\\fR [\\fIflags\\fR] [\\fIargs\\fR]\n", esc.Replace(p.Name))
	fmt.Fprintf(w, ".SH DESCRIPTION\n%s\n.SH GLOBAL FLAGS\n", esc.Replace(p.Description))
	manFlags(w, p.Global, esc)
	fmt.Fprint(w, ".SH COMMANDS\n")
	for _, c := range p.Commands {
		fmt.Fprintf(w, ".SS %s%s\n%s\n", esc.Replace(c.Name), esc.Replace(c.Args), esc.Replace(c.Summary))
		manFlags(w, CommandFlags(c), esc)
	}
	fmt.Fprint(w, p.Sections)
}

// roff writes text for troff: a character beyond ASCII as its \[uXXXX] escape, which
// troff reads without a preprocessor.
type roff struct{ w io.Writer }

func (r *roff) Write(p []byte) (int, error) {
	var b strings.Builder
	for _, c := range string(p) {
		if c < 128 {
			b.WriteRune(c)
		} else {
			fmt.Fprintf(&b, `\[u%04X]`, c)
		}
	}
	if _, err := io.WriteString(r.w, b.String()); err != nil {
		return 0, err
	}
	return len(p), nil
}

func manFlags(w io.Writer, fs *pflag.FlagSet, esc *strings.Replacer) {
	fs.VisitAll(func(f *pflag.Flag) {
		name := `\fB\-\-` + esc.Replace(f.Name) + `\fR`
		if f.Shorthand != "" {
			name = `\fB\-` + f.Shorthand + `\fR, ` + name
		}
		if t := f.Value.Type(); t != "bool" {
			name += " \\fI" + t + "\\fR"
		}
		usage := esc.Replace(f.Usage)
		if d := f.DefValue; d != "" && d != "false" && d != "[]" && d != "0" && d != "0s" {
			usage += " (default " + esc.Replace(d) + ")"
		}
		fmt.Fprintf(w, ".TP\n%s\n%s\n", name, usage)
	})
}
