package config

import (
	"fmt"
	"slices"
	"strings"
)

// Suggest returns ` (did you mean "x"?)` for the known name closest to name, when one is
// close enough to be a typo (an edit distance of at most a third of its length, or
// a case or separator difference), else "".
func Suggest(name string, known []string) string {
	best, bestD := "", -1
	norm := func(s string) string { return strings.ToLower(strings.NewReplacer("-", "_", ".", "_").Replace(s)) }
	for _, k := range slices.Sorted(slices.Values(known)) {
		if k == name {
			return ""
		}
		d := distance(norm(name), norm(k))
		if bestD < 0 || d < bestD {
			best, bestD = k, d
		}
	}
	if best == "" || bestD > max(1, len(best)/3) {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// distance is the Levenshtein distance of a and b, a transposition of neighbours
// counting once (the optimal string alignment distance).
func distance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev2, prev, cur := make([]int, len(rb)+1), make([]int, len(rb)+1), make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(rb)]
}

// serviceKeys are the keys a service may have, for suggestions.
var serviceKeys = []string{
	"add_docker", "build", "cached", "cap_add", "cap_drop", "command", "cpu_shares", "cpus",
	"default_cache_branch", "depends_on", "devices", "dns", "dns_search", "dockercfg_service",
	"dockerfile", "dockerfile_path", "encrypted_dockercfg_path", "encrypted_env_file",
	"encrypted_environment", "entrypoint", "env_file", "environment", "expose", "extra_hosts",
	"healthcheck", "hostname", "image", "init", "labels", "links", "mem_limit", "memswap_limit",
	"pids_limit", "platform", "privileged", "read_only", "security_opt", "shm_size",
	"stop_grace_period", "stop_signal", "sysctls", "tmpfs", "ulimits", "user", "volumes",
	"volumes_from", "working_dir",
}

// stepKeys are the keys a step may have, for suggestions.
var stepKeys = []string{
	"command", "dockercfg_service", "encrypted_dockercfg_path", "exclude", "image_name",
	"image_tag", "name", "on_fail", "registry", "service", "services", "steps", "tag",
	"timeout", "type",
}
