package mounts

import (
	"io/fs"
	"net"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		spec    string
		want    Volume
		wantErr string
	}{
		{name: "a bare target is an anonymous volume", spec: "/artifacts", want: Volume{Target: "/artifacts"}},
		{name: "a relative source is a host volume", spec: "./tmp:/x", want: Volume{Source: "./tmp", Target: "/x"}},
		{name: "a parent-relative source is a host volume", spec: "../cache:/x", want: Volume{Source: "../cache", Target: "/x"}},
		{name: "the build directory itself is a host volume", spec: ".:/src", want: Volume{Source: ".", Target: "/src"}},
		{name: "an absolute source is a host volume", spec: "/var/cache:/x", want: Volume{Source: "/var/cache", Target: "/x"}},
		{name: "ro makes a host volume read-only", spec: "./tmp:/x:ro", want: Volume{Source: "./tmp", Target: "/x", ReadOnly: true}},
		{name: "rw is the default", spec: "./tmp:/x:rw", want: Volume{Source: "./tmp", Target: "/x"}},
		{name: "an anonymous volume takes options after one colon", spec: "/x:ro", want: Volume{Target: "/x", ReadOnly: true}},
		{name: "nocopy keeps an anonymous volume empty", spec: "/x:nocopy", want: Volume{Target: "/x", NoCopy: true}},
		{name: "nocopy combines with ro", spec: "/x:ro,nocopy", want: Volume{Target: "/x", ReadOnly: true, NoCopy: true}},
		{name: "z is accepted and ignored", spec: "./tmp:/x:z", want: Volume{Source: "./tmp", Target: "/x"}},
		{name: "Z is accepted next to ro", spec: "./tmp:/x:Z,ro", want: Volume{Source: "./tmp", Target: "/x", ReadOnly: true}},
		{name: "file sharing options are accepted and ignored", spec: "./tmp:/x:cached,delegated,consistent", want: Volume{Source: "./tmp", Target: "/x"}},
		{name: "the target is cleaned", spec: "./tmp:/x//y/./z/", want: Volume{Source: "./tmp", Target: "/x/y/z"}},

		{name: "an unknown option is an error", spec: "./tmp:/x:zz", wantErr: `unknown option "zz"`},
		{name: "an empty option in a list is an error", spec: "/x:ro,", wantErr: `unknown option ""`},
		{name: "ro and rw together conflict", spec: "./tmp:/x:ro,rw", wantErr: `options "ro,rw": both "ro" and "rw"`},
		{name: "nocopy on a host volume is an error", spec: "./tmp:/x:nocopy", wantErr: `option "nocopy" applies to anonymous volumes only`},
		{name: "a named volume is refused", spec: "cache:/x", wantErr: `named volume "cache" is not supported; use a host path relative to the build directory, like ./cache`},
		{name: "a named volume with options is refused", spec: "cache:/x:ro", wantErr: `named volume "cache" is not supported; use a host path relative to the build directory, like ./cache`},
		{name: "a home directory source is refused", spec: "~/x:/x", wantErr: `host path "~/x": home directories are not supported; use a path relative to the build directory`},
		{name: "a home directory alone is not an absolute target", spec: "~/x", wantErr: `container path "~/x" is not absolute`},
		{name: "a relative target is refused", spec: "./tmp:x", wantErr: `container path "x" is not absolute`},
		{name: "a dot-relative anonymous target is refused", spec: "./x", wantErr: `container path "./x" is not absolute`},
		{name: "a target with .. is refused", spec: "./tmp:/x/../etc", wantErr: `container path "/x/../etc" contains ".."`},
		{name: "a target ending in .. is refused", spec: "/x/..", wantErr: `container path "/x/.." contains ".."`},
		{name: "the root as target is refused", spec: "./tmp:/", wantErr: `container path "/" cannot be a volume`},
		{name: "a target that cleans to the root is refused", spec: "//./", wantErr: `container path "/" cannot be a volume`},
		{name: "a target under /proc is refused", spec: "./tmp:/proc/sys", wantErr: `container path "/proc/sys" is under /proc, which the runtime owns`},
		{name: "/proc itself as target is refused", spec: "./tmp:/proc", wantErr: `container path "/proc" is /proc, which the runtime owns`},
		{name: "a target under /sys is refused", spec: "./tmp:/sys/fs/cgroup:ro", wantErr: `container path "/sys/fs/cgroup" is under /sys, which the runtime owns`},
		{name: "an anonymous volume at /sys is refused", spec: "/sys", wantErr: `container path "/sys" is /sys, which the runtime owns`},
		{name: "a target under /dev is refused", spec: "./tmp:/dev/shm", wantErr: `container path "/dev/shm" is under /dev, which the runtime owns`},
		{name: "a target that cleans to a path under /dev is refused", spec: "//dev//./pts/", wantErr: `container path "/dev/pts" is under /dev, which the runtime owns`},
		{name: "a target that only starts with the letters of /proc is a volume", spec: "./tmp:/process", want: Volume{Source: "./tmp", Target: "/process"}},
		{name: "a target under another directory called dev is a volume", spec: "./tmp:/src/dev", want: Volume{Source: "./tmp", Target: "/src/dev"}},
		{name: "too many colons are an error", spec: "./a:/b:ro:rw", wantErr: "too many colons"},
		{name: "an empty spec is an error", spec: "", wantErr: "empty volume"},
		{name: "a blank spec is an error", spec: "  ", wantErr: "empty volume"},
		{name: "an empty host path is an error", spec: ":/x", wantErr: "empty host path"},
		{name: "an empty host path with options is an error", spec: ":/x:ro", wantErr: "empty host path"},
		{name: "a trailing colon after a target is an error", spec: "/x:", wantErr: "empty options after the last colon"},
		{name: "a trailing colon after a host volume is an error", spec: "./tmp:/x:", wantErr: "empty options after the last colon"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.spec)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("Parse(%q) = %+v, want error %q", tt.spec, got, tt.wantErr)
				}
				if err.Error() != tt.wantErr {
					t.Fatalf("Parse(%q) error = %q, want %q", tt.spec, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.spec, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Parse(%q) (-want +got):\n%s", tt.spec, diff)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"/artifacts", "./tmp:/x", "./tmp:/x:ro", "/x:ro,nocopy", "cache:/x", "~/x:/x",
		":/x:ro", "/x:", "//./", "/x/..", "./a:/b:c:d", ".:/src:Z", "./x:/proc/sys", "//dev/./shm",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		v, err := Parse(spec)
		if err != nil {
			return
		}
		if !path.IsAbs(v.Target) || path.Clean(v.Target) != v.Target || v.Target == "/" {
			t.Fatalf("Parse(%q).Target = %q, want a clean absolute path below /", spec, v.Target)
		}
		for _, tree := range []string{"/proc", "/sys", "/dev"} {
			if v.Target == tree || strings.HasPrefix(v.Target, tree+"/") {
				t.Fatalf("Parse(%q).Target = %q, in the runtime's %s", spec, v.Target, tree)
			}
		}
		if v.NoCopy && !v.Anonymous() {
			t.Fatalf("Parse(%q) = %+v: nocopy on a host volume", spec, v)
		}
		if !v.Anonymous() && !isPath(v.Source) {
			t.Fatalf("Parse(%q).Source = %q, not written as a path", spec, v.Source)
		}
	})
}

// realTempDir is t.TempDir with its own symlinks resolved, as HostPath returns paths.
func realTempDir(t *testing.T) string {
	t.Helper()
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func mkdirs(t *testing.T, dirs ...string) {
	t.Helper()
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

func TestGuardHostPath(t *testing.T) {
	// root/
	//   build/           the build directory
	//     tmp/
	//     in -> tmp      (relative link inside)
	//     out -> ../outside
	//     dangling -> ../nothing
	//   outside/
	//   granted/data/
	//   buildlink -> build
	root := realTempDir(t)
	build := filepath.Join(root, "build")
	outside := filepath.Join(root, "outside")
	granted := filepath.Join(root, "granted")
	mkdirs(t, filepath.Join(build, "tmp"), outside, filepath.Join(granted, "data"))
	symlink(t, "tmp", filepath.Join(build, "in"))
	symlink(t, "../outside", filepath.Join(build, "out"))
	symlink(t, "../nothing", filepath.Join(build, "dangling"))
	symlink(t, "build", filepath.Join(root, "buildlink"))

	tests := []struct {
		name    string
		guard   Guard
		source  string
		want    string
		wantErr string // a substring: the messages carry temporary paths
	}{
		{
			name:   "an existing directory inside the build directory is accepted",
			guard:  Guard{BuildDir: build},
			source: "./tmp",
			want:   filepath.Join(build, "tmp"),
		},
		{
			name:   "the build directory itself is accepted",
			guard:  Guard{BuildDir: build},
			source: ".",
			want:   build,
		},
		{
			name:   "a path that leaves and re-enters the build directory is accepted",
			guard:  Guard{BuildDir: build},
			source: "../build/tmp",
			want:   filepath.Join(build, "tmp"),
		},
		{
			name:    "a missing directory does not exist",
			guard:   Guard{BuildDir: build},
			source:  "./missing",
			wantErr: "host path " + filepath.Join(build, "missing") + " does not exist",
		},
		{
			name:    "a dangling symlink does not exist",
			guard:   Guard{BuildDir: build},
			source:  "./dangling",
			wantErr: "does not exist",
		},
		{
			name:    "a relative path out of the build directory is refused",
			guard:   Guard{BuildDir: build},
			source:  "../outside",
			wantErr: "host path " + outside + " resolves to " + outside + ", outside the build directory " + build,
		},
		{
			name:    "an absolute path outside the build directory needs a grant",
			guard:   Guard{BuildDir: build},
			source:  outside,
			wantErr: "host path " + outside + " is absolute and no --allow-host-path grants it",
		},
		{
			name:    "a grant covers only its own prefix",
			guard:   Guard{BuildDir: build, Allow: []string{granted}},
			source:  outside,
			wantErr: "--allow-host-path",
		},
		{
			name:    "a grant does not cover a sibling sharing its name as a prefix",
			guard:   Guard{BuildDir: build, Allow: []string{filepath.Join(root, "out")}},
			source:  outside,
			wantErr: "--allow-host-path",
		},
		{
			name:   "an absolute path inside a grant is accepted",
			guard:  Guard{BuildDir: build, Allow: []string{granted}},
			source: filepath.Join(granted, "data"),
			want:   filepath.Join(granted, "data"),
		},
		{
			name:   "a grant that does not exist grants nothing but is no error",
			guard:  Guard{BuildDir: build, Allow: []string{filepath.Join(root, "nope"), granted}},
			source: filepath.Join(granted, "data"),
			want:   filepath.Join(granted, "data"),
		},
		{
			name:   "an absolute path inside the build directory is accepted",
			guard:  Guard{BuildDir: build},
			source: filepath.Join(build, "tmp"),
			want:   filepath.Join(build, "tmp"),
		},
		{
			name:    "a symlink pointing out of the build directory is refused",
			guard:   Guard{BuildDir: build},
			source:  "./out",
			wantErr: "host path " + filepath.Join(build, "out") + " resolves to " + outside + ", outside the build directory",
		},
		{
			name:   "a symlink pointing out of the build directory into a grant is accepted",
			guard:  Guard{BuildDir: build, Allow: []string{outside}},
			source: "./out",
			want:   outside,
		},
		{
			name:   "a symlink pointing inside the build directory resolves to its target",
			guard:  Guard{BuildDir: build},
			source: "./in",
			want:   filepath.Join(build, "tmp"),
		},
		{
			name:   "a build directory reached through a symlink works",
			guard:  Guard{BuildDir: filepath.Join(root, "buildlink")},
			source: "./tmp",
			want:   filepath.Join(build, "tmp"),
		},
		{
			name:    "a build directory reached through a symlink still refuses escapes",
			guard:   Guard{BuildDir: filepath.Join(root, "buildlink")},
			source:  "./out",
			wantErr: "outside the build directory",
		},
		{
			name:   "a grant reached through a symlink covers its target",
			guard:  Guard{BuildDir: build, Allow: []string{filepath.Join(build, "out")}},
			source: outside,
			want:   outside,
		},
		{
			name:    "a missing build directory is an error",
			guard:   Guard{BuildDir: filepath.Join(root, "nobuild")},
			source:  "/",
			wantErr: "build directory " + filepath.Join(root, "nobuild"),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.guard.HostPath(tt.source)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("HostPath(%q) = %q, want an error with %q", tt.source, got, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("HostPath(%q) error = %q, want it to contain %q", tt.source, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("HostPath(%q): %v", tt.source, err)
			}
			if got != tt.want {
				t.Errorf("HostPath(%q) = %q, want %q", tt.source, got, tt.want)
			}
		})
	}
}

func TestBind(t *testing.T) {
	tests := []struct {
		name     string
		readOnly bool
		want     specs.Mount
	}{
		{name: "a writable bind is rw", want: specs.Mount{Type: "bind", Source: "/h", Destination: "/c", Options: []string{"rbind", "rprivate", "nosuid", "nodev", "rw"}}},
		{name: "a read-only bind is ro", readOnly: true, want: specs.Mount{Type: "bind", Source: "/h", Destination: "/c", Options: []string{"rbind", "rprivate", "nosuid", "nodev", "ro"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, Bind("/h", "/c", tt.readOnly)); diff != "" {
				t.Errorf("Bind (-want +got):\n%s", diff)
			}
		})
	}
}

func TestForStep(t *testing.T) {
	const vols = "/state/volumes"
	rw := func(src, dst string) specs.Mount { return Bind(src, dst, false) }
	ro := func(src, dst string) specs.Mount { return Bind(src, dst, true) }
	anon := func(target string) Volume { return Volume{Target: target} }
	host := func(source, target string) Volume { return Volume{Source: source, Target: target} }

	tests := []struct {
		name     string
		services map[string]Service
		main     string
		want     *Step
		wantErr  string
	}{
		{
			name: "a service without volumes mounts nothing",
			services: map[string]Service{
				"app": {},
			},
			main: "app",
			want: &Step{Containers: []string{"app"}, Mounts: map[string][]specs.Mount{"app": nil}},
		},
		{
			name: "anonymous volumes get directories under the volumes directory by index",
			services: map[string]Service{
				"app": {
					Volumes: []Volume{host("./src", "/src"), anon("/artifacts"), {Target: "/cache", NoCopy: true, ReadOnly: true}},
					Hosts:   []string{"/build/src", "", ""},
				},
			},
			main: "app",
			want: &Step{
				Containers: []string{"app"},
				Mounts: map[string][]specs.Mount{"app": {
					rw("/build/src", "/src"),
					rw(vols+"/app/1", "/artifacts"),
					ro(vols+"/app/2", "/cache"),
				}},
				Anon: []Anon{
					{Service: "app", Target: "/artifacts", Dir: vols + "/app/1"},
					{Service: "app", Target: "/cache", Dir: vols + "/app/2", NoCopy: true},
				},
			},
		},
		{
			name: "volumes_from shares the same source with both containers",
			services: map[string]Service{
				"app":  {VolumesFrom: []From{{Service: "data"}}},
				"data": {Volumes: []Volume{anon("/artifacts"), host("./tmp", "/tmp/x")}, Hosts: []string{"", "/build/tmp"}},
			},
			main: "app",
			want: &Step{
				Containers: []string{"data", "app"},
				Mounts: map[string][]specs.Mount{
					"data": {rw(vols+"/data/0", "/artifacts"), rw("/build/tmp", "/tmp/x")},
					"app":  {rw(vols+"/data/0", "/artifacts"), rw("/build/tmp", "/tmp/x")},
				},
				Anon: []Anon{{Service: "data", Target: "/artifacts", Dir: vols + "/data/0"}},
			},
		},
		{
			name: "volumes_from with ro makes every mount it brings read-only",
			services: map[string]Service{
				"app":  {VolumesFrom: []From{{Service: "data", ReadOnly: true}}},
				"data": {Volumes: []Volume{anon("/artifacts"), host("./tmp", "/x")}, Hosts: []string{"", "/build/tmp"}},
			},
			main: "app",
			want: &Step{
				Containers: []string{"data", "app"},
				Mounts: map[string][]specs.Mount{
					"data": {rw(vols+"/data/0", "/artifacts"), rw("/build/tmp", "/x")},
					"app":  {ro(vols+"/data/0", "/artifacts"), ro("/build/tmp", "/x")},
				},
				Anon: []Anon{{Service: "data", Target: "/artifacts", Dir: vols + "/data/0"}},
			},
		},
		{
			name: "a service's own volume wins over volumes_from at the same target",
			services: map[string]Service{
				"app":  {Volumes: []Volume{host("./mine", "/x")}, Hosts: []string{"/build/mine"}, VolumesFrom: []From{{Service: "data"}}},
				"data": {Volumes: []Volume{anon("/x"), anon("/y")}},
			},
			main: "app",
			want: &Step{
				Containers: []string{"data", "app"},
				Mounts: map[string][]specs.Mount{
					"data": {rw(vols+"/data/0", "/x"), rw(vols+"/data/1", "/y")},
					"app":  {rw("/build/mine", "/x"), rw(vols+"/data/1", "/y")},
				},
				Anon: []Anon{
					{Service: "data", Target: "/x", Dir: vols + "/data/0"},
					{Service: "data", Target: "/y", Dir: vols + "/data/1"},
				},
			},
		},
		{
			name: "the first volumes_from wins when two bring the same target",
			services: map[string]Service{
				"app": {VolumesFrom: []From{{Service: "a"}, {Service: "b"}}},
				"a":   {Volumes: []Volume{anon("/x")}},
				"b":   {Volumes: []Volume{anon("/x")}},
			},
			main: "app",
			want: &Step{
				Containers: []string{"a", "b", "app"},
				Mounts: map[string][]specs.Mount{
					"a":   {rw(vols+"/a/0", "/x")},
					"b":   {rw(vols+"/b/0", "/x")},
					"app": {rw(vols+"/a/0", "/x")},
				},
				Anon: []Anon{
					{Service: "a", Target: "/x", Dir: vols + "/a/0"},
					{Service: "b", Target: "/x", Dir: vols + "/b/0"},
				},
			},
		},
		{
			name: "volumes_from is transitive and sources are created first",
			services: map[string]Service{
				"app":   {VolumesFrom: []From{{Service: "mid"}}},
				"mid":   {Volumes: []Volume{anon("/mid")}, VolumesFrom: []From{{Service: "base"}}},
				"base":  {Volumes: []Volume{anon("/base")}},
				"other": {Volumes: []Volume{anon("/other")}},
			},
			main: "app",
			want: &Step{
				Containers: []string{"base", "mid", "app"},
				Mounts: map[string][]specs.Mount{
					"base": {rw(vols+"/base/0", "/base")},
					"mid":  {rw(vols+"/mid/0", "/mid"), rw(vols+"/base/0", "/base")},
					"app":  {rw(vols+"/mid/0", "/mid"), rw(vols+"/base/0", "/base")},
				},
				Anon: []Anon{
					{Service: "base", Target: "/base", Dir: vols + "/base/0"},
					{Service: "mid", Target: "/mid", Dir: vols + "/mid/0"},
				},
			},
		},
		{
			name: "a read-only link in a chain keeps the mounts read-only further on",
			services: map[string]Service{
				"app":  {VolumesFrom: []From{{Service: "mid"}}},
				"mid":  {VolumesFrom: []From{{Service: "base", ReadOnly: true}}},
				"base": {Volumes: []Volume{anon("/base")}},
			},
			main: "app",
			want: &Step{
				Containers: []string{"base", "mid", "app"},
				Mounts: map[string][]specs.Mount{
					"base": {rw(vols+"/base/0", "/base")},
					"mid":  {ro(vols+"/base/0", "/base")},
					"app":  {ro(vols+"/base/0", "/base")},
				},
				Anon: []Anon{{Service: "base", Target: "/base", Dir: vols + "/base/0"}},
			},
		},
		{
			name: "a source shared by two paths is created once",
			services: map[string]Service{
				"app":  {VolumesFrom: []From{{Service: "a"}, {Service: "b"}}},
				"a":    {VolumesFrom: []From{{Service: "base"}}},
				"b":    {VolumesFrom: []From{{Service: "base"}}},
				"base": {Volumes: []Volume{anon("/base")}},
			},
			main: "app",
			want: &Step{
				Containers: []string{"base", "a", "b", "app"},
				Mounts: map[string][]specs.Mount{
					"base": {rw(vols+"/base/0", "/base")},
					"a":    {rw(vols+"/base/0", "/base")},
					"b":    {rw(vols+"/base/0", "/base")},
					"app":  {rw(vols+"/base/0", "/base")},
				},
				Anon: []Anon{{Service: "base", Target: "/base", Dir: vols + "/base/0"}},
			},
		},
		{
			name: "a parent target is mounted before a nested one",
			services: map[string]Service{
				"app": {
					Volumes:     []Volume{anon("/a/b/c"), host("./a", "/a"), anon("/z")},
					Hosts:       []string{"", "/build/a", ""},
					VolumesFrom: []From{{Service: "data"}},
				},
				"data": {Volumes: []Volume{anon("/a/b")}},
			},
			main: "app",
			want: &Step{
				Containers: []string{"data", "app"},
				Mounts: map[string][]specs.Mount{
					"data": {rw(vols+"/data/0", "/a/b")},
					"app": {
						rw("/build/a", "/a"),
						rw(vols+"/app/2", "/z"),
						rw(vols+"/data/0", "/a/b"),
						rw(vols+"/app/0", "/a/b/c"),
					},
				},
				Anon: []Anon{
					{Service: "data", Target: "/a/b", Dir: vols + "/data/0"},
					{Service: "app", Target: "/a/b/c", Dir: vols + "/app/0"},
					{Service: "app", Target: "/z", Dir: vols + "/app/2"},
				},
			},
		},
		{
			// Load refuses cycles; an order that has one is refused here too.
			name: "a volumes_from cycle in the order is an error",
			services: map[string]Service{
				"app": {VolumesFrom: []From{{Service: "a"}}},
				"a":   {VolumesFrom: []From{{Service: "b"}}},
				"b":   {VolumesFrom: []From{{Service: "a"}}},
			},
			main:    "app",
			wantErr: `service "b": volumes_from "a" is not planned before it`,
		},
		{
			name: "a service naming itself in volumes_from is an error",
			services: map[string]Service{
				"app": {VolumesFrom: []From{{Service: "app"}}},
			},
			main:    "app",
			wantErr: `service "app": volumes_from "app" is not planned before it`,
		},
		{
			name: "volumes_from naming an unknown service is an error",
			services: map[string]Service{
				"app": {VolumesFrom: []From{{Service: "ghost"}}},
			},
			main:    "app",
			wantErr: `volumes_from names unknown service "ghost"`,
		},
		{
			name: "an unresolved host path is an error",
			services: map[string]Service{
				"app": {Volumes: []Volume{host("./tmp", "/x")}},
			},
			main:    "app",
			wantErr: `service "app": host path of "./tmp" is not resolved`,
		},
		{
			name: "two volumes at one target are an error",
			services: map[string]Service{
				"app": {Volumes: []Volume{anon("/x"), host("./tmp", "/x")}, Hosts: []string{"", "/build/tmp"}},
			},
			main:    "app",
			wantErr: `service "app": two volumes at /x`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ForStep(tt.services, vols, volumeOrder(tt.services, tt.main))
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("ForStep = %+v, want error %q", got, tt.wantErr)
				}
				if err.Error() != tt.wantErr {
					t.Fatalf("ForStep error = %q, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ForStep: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ForStep (-want +got):\n%s", diff)
			}
		})
	}
}

// volumeOrder is what config.Graph.VolumeOrder gives for services: each root after its
// volumes_from sources, transitively, a cycle cut where it closes.
func volumeOrder(services map[string]Service, roots ...string) []string {
	var out []string
	visiting := map[string]bool{}
	var visit func(string)
	visit = func(name string) {
		if slices.Contains(out, name) || visiting[name] {
			return
		}
		visiting[name] = true
		for _, f := range services[name].VolumesFrom {
			visit(f.Service)
		}
		out = append(out, name)
	}
	for _, r := range roots {
		visit(r)
	}
	return out
}

// entry is what TestCopy compares of one copied file.
type entry struct {
	Mode     fs.FileMode
	Data     string
	Linkname string
}

// tree reads the entries below dir by their slash-separated relative path; "." is dir.
func tree(t *testing.T, dir string) map[string]entry {
	t.Helper()
	out := map[string]entry{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		e := entry{Mode: info.Mode()}
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			if e.Linkname, err = os.Readlink(p); err != nil {
				return err
			}
		case info.Mode().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			e.Data = string(data)
		}
		out[filepath.ToSlash(rel)] = e
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func writeFile(t *testing.T, name, data string, mode fs.FileMode) {
	t.Helper()
	if err := os.WriteFile(name, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	// Chmod, not WriteFile's mode: the umask would strip bits.
	if err := os.Chmod(name, mode); err != nil {
		t.Fatal(err)
	}
}

func chmod(t *testing.T, name string, mode fs.FileMode) {
	t.Helper()
	if err := os.Chmod(name, mode); err != nil {
		t.Fatal(err)
	}
}

func TestCopy(t *testing.T) {
	src := t.TempDir()
	outside := t.TempDir()
	writeFile(t, filepath.Join(outside, "secret"), "secret", 0o600)

	mkdirs(t, filepath.Join(src, "dir", "sub"), filepath.Join(src, "empty"), filepath.Join(src, "shared"))
	writeFile(t, filepath.Join(src, "file"), "hello", 0o644)
	writeFile(t, filepath.Join(src, "dir", "run.sh"), "#!/bin/sh\n", 0o755)
	writeFile(t, filepath.Join(src, "dir", "sub", "private"), "p", 0o600)
	writeFile(t, filepath.Join(src, "suid"), "s", 0o755|fs.ModeSetuid)
	writeFile(t, filepath.Join(src, "sgid"), "g", 0o755|fs.ModeSetgid)
	symlink(t, "file", filepath.Join(src, "rel"))
	symlink(t, filepath.Join(outside, "secret"), filepath.Join(src, "abs"))
	symlink(t, outside, filepath.Join(src, "dirlink"))
	symlink(t, "missing", filepath.Join(src, "dangling"))
	if err := syscall.Mkfifo(filepath.Join(src, "fifo"), 0o640); err != nil {
		t.Fatal(err)
	}
	chmod(t, filepath.Join(src, "fifo"), 0o640)
	chmod(t, filepath.Join(src, "dir"), 0o750)
	chmod(t, filepath.Join(src, "empty"), 0o700)
	chmod(t, filepath.Join(src, "shared"), 0o777|fs.ModeSticky|fs.ModeSetgid)
	chmod(t, src, 0o751)

	dst := t.TempDir()
	chmod(t, dst, 0o700)
	got, err := Copy(dst, src)
	if err != nil {
		t.Fatalf("Copy: %v", err)
	}
	if !got {
		t.Errorf("Copy = false, want true for a directory with content")
	}
	if diff := cmp.Diff(tree(t, src), tree(t, dst)); diff != "" {
		t.Errorf("copied tree (-want +got):\n%s", diff)
	}

	// Owners are kept too; as a plain user they are the user's own, which still checks
	// that Lchown ran on links without following them.
	for _, name := range []string{".", "file", "rel", "dir/sub/private", "fifo"} {
		s, d := lstat(t, filepath.Join(src, name)), lstat(t, filepath.Join(dst, name))
		if s.Uid != d.Uid || s.Gid != d.Gid {
			t.Errorf("%s: owner %d:%d, want %d:%d", name, d.Uid, d.Gid, s.Uid, s.Gid)
		}
	}
}

// TestCopySkipsDevicesAndSockets pins why Copy is not continuity's fs.CopyDir, which
// recreates device nodes and sockets with mknod: a device node in an image must not become
// a node in a volume's directory on the host, where no nodev mount option covers it.
func TestCopySkipsDevicesAndSockets(t *testing.T) {
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "keep"), "k", 0o644)
	l, err := net.Listen("unix", filepath.Join(src, "sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	devices := true
	if err := unix.Mknod(filepath.Join(src, "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
		t.Logf("no device nodes, only a socket: cannot make a device node here: %v", err)
		devices = false
	}
	if devices {
		if err := unix.Mknod(filepath.Join(src, "disk"), unix.S_IFBLK|0o660, int(unix.Mkdev(7, 0))); err != nil {
			t.Fatal(err)
		}
	}

	dst := t.TempDir()
	if _, err := Copy(dst, src); err != nil {
		t.Fatalf("Copy: %v", err)
	}
	want := map[string]entry{
		".":    {Mode: lstatMode(t, src)},
		"keep": {Mode: 0o644, Data: "k"},
	}
	if diff := cmp.Diff(want, tree(t, dst)); diff != "" {
		t.Errorf("copied tree (-want +got):\n%s", diff)
	}
}

func lstatMode(t *testing.T, name string) fs.FileMode {
	t.Helper()
	info, err := os.Lstat(name)
	if err != nil {
		t.Fatal(err)
	}
	return info.Mode()
}

func lstat(t *testing.T, name string) *syscall.Stat_t {
	t.Helper()
	info, err := os.Lstat(name)
	if err != nil {
		t.Fatal(err)
	}
	return info.Sys().(*syscall.Stat_t)
}

func TestCopyNothing(t *testing.T) {
	dir := t.TempDir()
	mkdirs(t, filepath.Join(dir, "empty"), filepath.Join(dir, "real"))
	writeFile(t, filepath.Join(dir, "file"), "x", 0o644)
	writeFile(t, filepath.Join(dir, "real", "x"), "x", 0o644)
	symlink(t, "real", filepath.Join(dir, "link"))

	tests := []struct {
		name string
		src  string
	}{
		{name: "a missing source holds nothing", src: filepath.Join(dir, "missing")},
		{name: "an empty directory holds nothing", src: filepath.Join(dir, "empty")},
		{name: "a regular file is not a directory to copy", src: filepath.Join(dir, "file")},
		{name: "a symlink to a directory is not followed", src: filepath.Join(dir, "link")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := t.TempDir()
			got, err := Copy(dst, tt.src)
			if err != nil {
				t.Fatalf("Copy: %v", err)
			}
			if got {
				t.Errorf("Copy = true, want false")
			}
			if left := tree(t, dst); len(left) != 1 {
				t.Errorf("Copy wrote %v, want nothing", left)
			}
		})
	}
}
