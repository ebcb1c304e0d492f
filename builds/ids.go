package builds

import (
	"fmt"
	"strconv"
	"strings"
)

// What a container id says it is, after the build id and the sequence number.
const (
	// RoleStep is a step's container of a service (and its dependencies').
	RoleStep = ""
	// RoleDockercfg is a credential service's container.
	RoleDockercfg = "dockercfg"
	// RoleBuild is an image build: its RUN containers and snapshots are "<id>-<n>".
	RoleBuild = "build"
	// RoleView is a read-only view of a service's image; it has no sequence number.
	RoleView = "view"
)

// ID names a containerd object of a build: a container, its snapshot (keyed by the
// container id), a view, the RUN containers of an image build. It is the one scheme of
// crun-ci's ids, written by String and read by ParseID:
//
//	crunci-<build>-<seq>-<service>            a step's container
//	crunci-<build>-<seq>-dockercfg-<service>  a credential service's
//	crunci-<build>-<seq>-build                an image build (its RUNs add "-<n>")
//	crunci-<build>-view-<service>             a view of a service's image
type ID struct {
	Build string
	// Seq numbers the step, credential service or image build within the build (from 1).
	Seq     int64
	Role    string
	Service string
}

// idPrefix starts every id crun-ci gives.
const idPrefix = "crunci-"

func (id ID) String() string {
	svc := Sanitize(id.Service)
	switch id.Role {
	case RoleView:
		return fmt.Sprintf("%s%s-view-%s", idPrefix, id.Build, svc)
	case RoleBuild:
		return fmt.Sprintf("%s%s-%d-build", idPrefix, id.Build, id.Seq)
	case RoleDockercfg:
		return fmt.Sprintf("%s%s-%d-dockercfg-%s", idPrefix, id.Build, id.Seq, svc)
	}
	return fmt.Sprintf("%s%s-%d-%s", idPrefix, id.Build, id.Seq, svc)
}

// ParseID reads an id that String wrote; it reports false for an id crun-ci did not give.
// The service is as Sanitize left it.
func ParseID(s string) (ID, bool) {
	rest, ok := strings.CutPrefix(s, idPrefix)
	if !ok {
		return ID{}, false
	}
	build, rest, ok := strings.Cut(rest, "-")
	if !ok || build == "" {
		return ID{}, false
	}
	id := ID{Build: build}
	if svc, ok := strings.CutPrefix(rest, "view-"); ok {
		id.Role, id.Service = RoleView, svc
		return id, svc != ""
	}
	seq, rest, _ := strings.Cut(rest, "-")
	n, err := strconv.ParseInt(seq, 10, 64)
	if err != nil || n < 1 {
		return ID{}, false
	}
	id.Seq = n
	switch {
	case rest == RoleBuild || strings.HasPrefix(rest, RoleBuild+"-"):
		id.Role = RoleBuild
	case strings.HasPrefix(rest, RoleDockercfg+"-"):
		id.Role, id.Service = RoleDockercfg, strings.TrimPrefix(rest, RoleDockercfg+"-")
	default:
		id.Service = rest
	}
	return id, true
}

// Sanitize makes a service name fit containerd's identifier rules: letters and digits
// separated by single '-', at most 40 characters ("svc" when nothing is left).
func Sanitize(name string) string {
	var sb strings.Builder
	sep := false
	for _, r := range name {
		ok := r < 128 && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
		switch {
		case ok:
			if sep && sb.Len() > 0 {
				sb.WriteByte('-')
			}
			sep = false
			sb.WriteRune(r)
		default:
			sep = true
		}
	}
	out := sb.String()
	if len(out) > 40 {
		out = strings.TrimRight(out[:40], "-")
	}
	if out == "" {
		out = "svc"
	}
	return out
}
