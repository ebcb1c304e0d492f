package dockerfile

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/crun-ci/crun-ci/hostfs"
)

// parseText parses text as the Dockerfile of r, the way Build does, from a file in a
// temporary directory. DockerfileName defaults to "Dockerfile".
func parseText(t *testing.T, text string, r Request) (*run, []int, map[string]string, error) {
	t.Helper()
	dir := t.TempDir()
	r.Root, r.Dockerfile = dirOf(t, dir, hostfs.Beneath), "Dockerfile"
	if r.DockerfileName == "" {
		r.DockerfileName = "Dockerfile"
	}
	if r.Output == nil {
		r.Output = io.Discard
	}
	writeFile(t, filepath.Join(dir, r.Dockerfile), text)
	return parse(r)
}

// metadata builds text as Build would, without containerd: every stage it needs must
// start FROM scratch or an earlier stage and hold only metadata instructions. It
// returns the build and the last stage's state, or the first instruction's error as
// command returns it.
func metadata(t *testing.T, text string, r Request) (*run, *state, error) {
	t.Helper()
	x, needed, meta, err := parseText(t, text, r)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	x.b = &Builder{CacheSecret: testCacheSecret}
	ctx := context.Background()
	for _, i := range needed {
		s, err := x.base(ctx, &x.stages[i], i)
		if err != nil {
			t.Fatalf("stage %d: %v", i, err)
		}
		for _, c := range x.stages[i].Commands {
			if err := x.command(ctx, s, c, meta, i); err != nil {
				return x, s, err
			}
		}
		x.built[i] = s
	}
	return x, x.built[len(x.stages)-1], nil
}

// mustMetadata is metadata for a Dockerfile that builds.
func mustMetadata(t *testing.T, text string, r Request) (*run, *state) {
	t.Helper()
	x, s, err := metadata(t, text, r)
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	return x, s
}

func TestParseErrors(t *testing.T) {
	for _, tt := range []struct {
		name, dockerfile, want string
	}{
		{
			name:       "an unknown instruction names its line",
			dockerfile: "FROM scratch\nFETCH http://example.com/x /x\n",
			want:       "Dockerfile:2: unknown instruction: FETCH",
		},
		{
			name:       "a Dockerfile without FROM is refused",
			dockerfile: "ARG A=1\n",
			want:       "Dockerfile: no FROM instruction",
		},
		{
			name:       "an instruction before the first FROM is refused",
			dockerfile: "ENV A=1\nFROM scratch\n",
			want:       "Dockerfile:1: an instruction before the first FROM",
		},
		{
			name:       "a flag an instruction does not know is refused",
			dockerfile: "FROM scratch\nCOPY --nope a /b\n",
			want:       "Dockerfile:2: unknown flag: --nope",
		},
		{
			name:       "VOLUME with an empty path is refused",
			dockerfile: "FROM scratch\nVOLUME [\"\"]\n",
			want:       "Dockerfile:2: VOLUME specified can not be an empty string",
		},
		{
			name:       "an empty Dockerfile is refused",
			dockerfile: "",
			want:       "Dockerfile: file with no instructions",
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, _, _, err := parseText(t, tt.dockerfile, Request{})
			if err == nil {
				t.Fatal("no error")
			}
			if diff := cmp.Diff(tt.want, err.Error()); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseNamesTheDockerfileAsTheUserWroteIt(t *testing.T) {
	_, _, _, err := parseText(t, "FROM scratch\nMAINTAINER me\n", Request{DockerfileName: "docker/Dockerfile.ci"})
	want := "docker/Dockerfile.ci:2: MAINTAINER is not supported"
	if err == nil || err.Error() != want {
		t.Errorf("error = %v, want %s", err, want)
	}
}

func TestParseMissingDockerfile(t *testing.T) {
	_, _, _, err := parse(Request{Root: dirOf(t, t.TempDir(), hostfs.Beneath), Dockerfile: "Dockerfile", DockerfileName: "Dockerfile"})
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("error = %v, want one that is fs.ErrNotExist", err)
	}
}

func TestParseCountsSteps(t *testing.T) {
	// One step per FROM and per instruction of the stages built; the unused stage
	// counts nothing.
	x, _, _, err := parseText(t, "FROM scratch AS a\nENV A=1\nFROM scratch AS unused\nENV B=1\nENV C=1\nFROM a\nUSER 1\nLABEL l=1\n", Request{})
	if err != nil {
		t.Fatal(err)
	}
	if x.steps != 5 {
		t.Errorf("steps = %d, want 5", x.steps)
	}
}

func TestCheckCommands(t *testing.T) {
	for _, tt := range []struct {
		name, dockerfile, want string
	}{
		{
			name:       "ONBUILD is refused",
			dockerfile: "FROM scratch\nONBUILD RUN true\n",
			want:       "Dockerfile:2: ONBUILD is not supported",
		},
		{
			name:       "MAINTAINER is refused",
			dockerfile: "FROM scratch\nENV A=1\nMAINTAINER someone\n",
			want:       "Dockerfile:3: MAINTAINER is not supported",
		},
		{
			name:       "RUN --mount is refused",
			dockerfile: "FROM scratch\nRUN --mount=type=cache,target=/root/.cache true\n",
			want:       "Dockerfile:2: RUN with --mount is not supported",
		},
		{
			name:       "RUN --network is refused",
			dockerfile: "FROM scratch\nRUN --network=none true\n",
			want:       "Dockerfile:2: RUN with --network is not supported",
		},
		{
			name:       "RUN with a here-document is refused",
			dockerfile: "FROM scratch\nRUN <<EOF\necho hi\nEOF\n",
			want:       "Dockerfile:2: RUN with a here-document is not supported",
		},
		{
			name:       "COPY --chmod is refused",
			dockerfile: "FROM scratch\nCOPY --chmod=644 a /b\n",
			want:       "Dockerfile:2: COPY with --chmod is not supported",
		},
		{
			name:       "COPY --exclude is refused",
			dockerfile: "FROM scratch\nCOPY --exclude=*.md . /b/\n",
			want:       "Dockerfile:2: COPY with --exclude is not supported",
		},
		{
			name:       "COPY --parents is refused",
			dockerfile: "FROM scratch\nCOPY --parents a/b /c/\n",
			want:       "Dockerfile:2: COPY with --parents is not supported",
		},
		{
			name:       "COPY with a here-document is refused",
			dockerfile: "FROM scratch\nCOPY <<EOF /x\nhi\nEOF\n",
			want:       "Dockerfile:2: COPY with a here-document is not supported",
		},
		{
			name:       "ADD --checksum is refused",
			dockerfile: "FROM scratch\nADD --checksum=sha256:24454f830cdb571e2c4ad15481119c43b3cafd48dd869a9b2945d1036d1dc68d https://example.com/a.tar /a\n",
			want:       "Dockerfile:2: ADD with --checksum is not supported",
		},
		{
			name:       "ADD --keep-git-dir is refused",
			dockerfile: "FROM scratch\nADD --keep-git-dir=true https://github.com/moby/buildkit.git /src\n",
			want:       "Dockerfile:2: ADD with --keep-git-dir is not supported",
		},
		{
			name:       "ADD --chmod is refused",
			dockerfile: "FROM scratch\nADD --chmod=755 a /b\n",
			want:       "Dockerfile:2: ADD with --chmod is not supported",
		},
		{
			name:       "ADD with a here-document is refused",
			dockerfile: "FROM scratch\nADD <<EOF /x\nhi\nEOF\n",
			want:       "Dockerfile:2: ADD with a here-document is not supported",
		},
		{
			name:       "a refused instruction in a stage that is built is found",
			dockerfile: "FROM scratch AS a\nONBUILD RUN true\nFROM scratch\nCOPY --from=a /x /x\n",
			want:       "Dockerfile:2: ONBUILD is not supported",
		},
		{
			name:       "a refused instruction in a stage that is not built is no error",
			dockerfile: "FROM scratch AS unused\nONBUILD RUN true\nFROM scratch\nENV A=1\n",
		},
		{
			name: "every supported instruction passes",
			dockerfile: `FROM scratch AS a
ARG A=1
ENV B=2
WORKDIR /w
USER nobody
CMD ["c"]
ENTRYPOINT ["e"]
LABEL l=1
EXPOSE 80
VOLUME /v
HEALTHCHECK CMD true
SHELL ["/bin/sh", "-c"]
STOPSIGNAL SIGINT
RUN true
RUN ["true"]
COPY a /b
COPY --chown=1:1 --link a /b
ADD a.tar /c/
ADD https://example.com/x /x
FROM a
COPY --from=a /b /b
`,
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, _, _, err := parseText(t, tt.dockerfile, Request{})
			got := ""
			if err != nil {
				got = err.Error()
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNeeded(t *testing.T) {
	for _, tt := range []struct {
		name, dockerfile string
		args             map[string]string
		want             []int
	}{
		{
			name:       "a single stage is built",
			dockerfile: "FROM scratch\n",
			want:       []int{0},
		},
		{
			name:       "a stage nothing refers to is skipped",
			dockerfile: "FROM scratch AS a\nFROM scratch AS unused\nFROM scratch\nCOPY --from=a /x /x\n",
			want:       []int{0, 2},
		},
		{
			name:       "COPY --from names a stage by index",
			dockerfile: "FROM scratch\nFROM scratch\nFROM scratch\nCOPY --from=1 /x /x\n",
			want:       []int{1, 2},
		},
		{
			name:       "FROM an earlier stage needs it, and what it needs",
			dockerfile: "FROM scratch AS a\nFROM scratch AS b\nCOPY --from=a /x /x\nFROM scratch AS unused\nFROM b\n",
			want:       []int{0, 1, 3},
		},
		{
			name:       "stage names are case-insensitive",
			dockerfile: "FROM scratch AS Build\nFROM scratch AS unused\nFROM scratch\nCOPY --from=BUILD /x /x\n",
			want:       []int{0, 2},
		},
		{
			name:       "COPY --from an image needs no stage",
			dockerfile: "FROM scratch AS a\nFROM scratch\nCOPY --from=alpine:3 /x /x\n",
			want:       []int{1},
		},
		{
			name:       "a meta ARG's default picks the stage in FROM",
			dockerfile: "ARG BASE=a\nFROM scratch AS a\nFROM scratch AS b\nFROM ${BASE}\n",
			want:       []int{0, 2},
		},
		{
			name:       "a build argument overrides the meta ARG in FROM",
			dockerfile: "ARG BASE=a\nFROM scratch AS a\nFROM scratch AS b\nFROM $BASE\n",
			args:       map[string]string{"BASE": "b"},
			want:       []int{1, 2},
		},
		{
			name:       "a stage only refers to stages before it",
			dockerfile: "FROM scratch\nCOPY --from=later /x /x\nFROM scratch AS later\nFROM scratch\nCOPY --from=0 /x /x\n",
			want:       []int{0, 2},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, got, _, err := parseText(t, tt.dockerfile, Request{Args: tt.args})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("stages (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNeededExpandsFrom(t *testing.T) {
	x, _, meta, err := parseText(t, "ARG REG=registry.example.com\nARG TAG\nFROM $REG/app:${TAG:-latest}\n", Request{Args: map[string]string{"TAG": "v1"}})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := x.stages[0].BaseName, "registry.example.com/app:v1"; got != want {
		t.Errorf("FROM = %q, want %q", got, want)
	}
	if diff := cmp.Diff(map[string]string{"REG": "registry.example.com", "TAG": "v1"}, meta); diff != "" {
		t.Errorf("meta (-want +got):\n%s", diff)
	}
}

func TestArg(t *testing.T) {
	const dockerfile = `ARG M=meta
ARG N
FROM scratch
ARG M
ARG N
ARG A=default
ARG B=${A}-b
ARG S=default
ARG U
`
	for _, tt := range []struct {
		name          string
		args, secrets map[string]string
		want          map[string]string
	}{
		{
			name: "defaults and the meta value, an ARG without value stays out",
			want: map[string]string{"M": "meta", "A": "default", "B": "default-b", "S": "default"},
		},
		{
			name: "a build argument beats the default, and later defaults see it",
			args: map[string]string{"A": "arg", "U": "u"},
			want: map[string]string{"M": "meta", "A": "arg", "B": "arg-b", "S": "default", "U": "u"},
		},
		{
			name:    "a secret argument beats a build argument",
			args:    map[string]string{"S": "plain"},
			secrets: map[string]string{"S": "secret"},
			want:    map[string]string{"M": "meta", "A": "default", "B": "default-b", "S": "secret"},
		},
		{
			name: "a build argument beats the meta value, in the meta ARG and the stage's",
			args: map[string]string{"M": "cli"},
			want: map[string]string{"M": "cli", "A": "default", "B": "default-b", "S": "default"},
		},
		{
			name:    "a meta ARG without default takes the build argument",
			secrets: map[string]string{"N": "n"},
			want:    map[string]string{"M": "meta", "N": "n", "A": "default", "B": "default-b", "S": "default"},
		},
		{
			name: "an undeclared build argument stays out",
			args: map[string]string{"X": "x"},
			want: map[string]string{"M": "meta", "A": "default", "B": "default-b", "S": "default"},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			x, s := mustMetadata(t, dockerfile, Request{Args: tt.args, SecretArgs: tt.secrets})
			if diff := cmp.Diff(tt.want, s.args); diff != "" {
				t.Errorf("args (-want +got):\n%s", diff)
			}
			wantUsed := map[string]bool{"M": true, "N": true, "A": true, "B": true, "S": true, "U": true}
			if diff := cmp.Diff(wantUsed, x.used); diff != "" {
				t.Errorf("used (-want +got):\n%s", diff)
			}
		})
	}
}

func TestArgMetaOnlyWhenDeclared(t *testing.T) {
	_, s := mustMetadata(t, "ARG M=meta\nFROM scratch\nENV E=x$M\n", Request{})
	if diff := cmp.Diff([]string{"E=x"}, s.env()); diff != "" {
		t.Errorf("env (-want +got):\n%s", diff)
	}
}

func TestArgDefaultSeesEnv(t *testing.T) {
	// BuildKit expands an ARG's default with the environment of the stage (getEnv in
	// dispatchArg), ENV included: docker build gives B=1 here.
	_, s := mustMetadata(t, "FROM scratch\nENV A=1\nARG B=$A\n", Request{})
	if got := s.args["B"]; got != "1" {
		t.Errorf("B = %q, want 1", got)
	}
}

func TestEnv(t *testing.T) {
	for _, tt := range []struct {
		name, dockerfile string
		args             map[string]string
		want             []string
	}{
		{
			name:       "ARGs come sorted, before ENV",
			dockerfile: "FROM scratch\nARG Z=z\nARG A=a\nENV E=e\n",
			want:       []string{"A=a", "Z=z", "E=e"},
		},
		{
			name:       "ENV overrides an ARG of the same name",
			dockerfile: "FROM scratch\nARG A=arg\nENV A=env\n",
			want:       []string{"A=env"},
		},
		{
			name:       "ENV overrides an ARG whose value came from a build argument",
			dockerfile: "FROM scratch\nARG A\nENV A=env\n",
			args:       map[string]string{"A": "arg"},
			want:       []string{"A=env"},
		},
		{
			name:       "ENV replaces its own earlier value in place",
			dockerfile: "FROM scratch\nENV A=1 B=2\nENV A=3\n",
			want:       []string{"A=3", "B=2"},
		},
		{
			name:       "ENV sees the values from before the instruction, as Docker",
			dockerfile: "FROM scratch\nENV A=1\nENV A=2 B=$A\n",
			want:       []string{"A=2", "B=1"},
		},
		{
			name:       "ENV expands an ARG",
			dockerfile: "FROM scratch\nARG V=1.2\nENV VERSION=v$V\n",
			want:       []string{"V=1.2", "VERSION=v1.2"},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, s := mustMetadata(t, tt.dockerfile, Request{Args: tt.args})
			if diff := cmp.Diff(tt.want, s.env()); diff != "" {
				t.Errorf("env (-want +got):\n%s", diff)
			}
		})
	}
}

func TestWorkdirDirs(t *testing.T) {
	_, s := mustMetadata(t, "FROM scratch\nENV A=1\nWORKDIR /x/$A\nWORKDIR b\nWORKDIR ../c/\n", Request{})
	if got, want := s.config.Config.WorkingDir, "/x/1/c"; got != want {
		t.Errorf("WorkingDir = %q, want %q", got, want)
	}
	if diff := cmp.Diff([]string{"/x/1", "/x/1/b", "/x/1/c"}, s.dirs); diff != "" {
		t.Errorf("dirs (-want +got):\n%s", diff)
	}
}

func TestMetadataInstructions(t *testing.T) {
	type config = dockerspec.DockerOCIImageConfig
	type image = ocispec.ImageConfig
	type ext = dockerspec.DockerOCIImageConfigExt
	for _, tt := range []struct {
		name, dockerfile string
		args             map[string]string
		want             config
	}{
		{
			name:       "ENV expands in a later WORKDIR",
			dockerfile: "FROM scratch\nENV A=1\nWORKDIR /x/$A\n",
			want:       config{ImageConfig: image{Env: []string{"A=1"}, WorkingDir: "/x/1"}},
		},
		{
			name:       "a relative WORKDIR is relative to the one before",
			dockerfile: "FROM scratch\nWORKDIR /a\nWORKDIR b\n",
			want:       config{ImageConfig: image{WorkingDir: "/a/b"}},
		},
		{
			name:       "a relative first WORKDIR is relative to /",
			dockerfile: "FROM scratch\nWORKDIR app\n",
			want:       config{ImageConfig: image{WorkingDir: "/app"}},
		},
		{
			name:       "USER expands an ARG",
			dockerfile: "FROM scratch\nARG U=app\nUSER $U:staff\n",
			want:       config{ImageConfig: image{User: "app:staff"}},
		},
		{
			name:       "CMD in shell form runs /bin/sh -c",
			dockerfile: "FROM scratch\nCMD echo $HOME hi\n",
			want:       config{ImageConfig: image{Cmd: []string{"/bin/sh", "-c", "echo $HOME hi"}}},
		},
		{
			name:       "CMD in shell form runs SHELL's shell",
			dockerfile: "FROM scratch\nSHELL [\"/bin/bash\", \"-o\", \"pipefail\", \"-c\"]\nCMD echo hi\n",
			want: config{
				ImageConfig:             image{Cmd: []string{"/bin/bash", "-o", "pipefail", "-c", "echo hi"}},
				DockerOCIImageConfigExt: ext{Shell: []string{"/bin/bash", "-o", "pipefail", "-c"}},
			},
		},
		{
			name:       "CMD in exec form is as written",
			dockerfile: "FROM scratch\nCMD [\"a\", \"b c\"]\n",
			want:       config{ImageConfig: image{Cmd: []string{"a", "b c"}}},
		},
		{
			name:       "ENTRYPOINT in shell form runs /bin/sh -c",
			dockerfile: "FROM scratch\nENTRYPOINT exec server --port 80\n",
			want:       config{ImageConfig: image{Entrypoint: []string{"/bin/sh", "-c", "exec server --port 80"}}},
		},
		{
			name:       "ENTRYPOINT clears the CMD of the stage it starts from",
			dockerfile: "FROM scratch AS base\nCMD [\"c\"]\nFROM base\nENTRYPOINT [\"e\"]\n",
			want:       config{ImageConfig: image{Entrypoint: []string{"e"}}},
		},
		{
			name:       "ENTRYPOINT keeps a CMD set before it in the same stage",
			dockerfile: "FROM scratch AS base\nCMD [\"old\"]\nFROM base\nCMD [\"c\"]\nENTRYPOINT [\"e\"]\n",
			want:       config{ImageConfig: image{Entrypoint: []string{"e"}, Cmd: []string{"c"}}},
		},
		{
			name:       "CMD after ENTRYPOINT is kept",
			dockerfile: "FROM scratch\nENTRYPOINT [\"e\"]\nCMD [\"c\"]\n",
			want:       config{ImageConfig: image{Entrypoint: []string{"e"}, Cmd: []string{"c"}}},
		},
		{
			name:       "a stage from an earlier stage keeps its config",
			dockerfile: "FROM scratch AS base\nENV A=1\nCMD [\"c\"]\nFROM base\nUSER 1000\n",
			want:       config{ImageConfig: image{Env: []string{"A=1"}, Cmd: []string{"c"}, User: "1000"}},
		},
		{
			name:       "EXPOSE adds /tcp when no protocol is given",
			dockerfile: "FROM scratch\nARG P=8080\nEXPOSE 80 53/udp $P\n",
			want: config{ImageConfig: image{ExposedPorts: map[string]struct{}{
				"80/tcp": {}, "53/udp": {}, "8080/tcp": {},
			}}},
		},
		{
			name:       "LABEL sets labels, expanded, the last value winning",
			dockerfile: "FROM scratch\nARG V=2\nLABEL a=1 \"b c\"=\"d e\"\nLABEL a=$V version=v$V\n",
			want: config{ImageConfig: image{Labels: map[string]string{
				"a": "2", "b c": "d e", "version": "v2",
			}}},
		},
		{
			name:       "VOLUME in both forms",
			dockerfile: "FROM scratch\nENV D=/data\nVOLUME $D /logs\nVOLUME [\"/cache\"]\n",
			want: config{
				ImageConfig: image{Env: []string{"D=/data"}, Volumes: map[string]struct{}{
					"/data": {}, "/logs": {}, "/cache": {},
				}},
			},
		},
		{
			name:       "HEALTHCHECK with --interval",
			dockerfile: "FROM scratch\nHEALTHCHECK --interval=5s --retries=3 CMD curl -f http://localhost/\n",
			want: config{DockerOCIImageConfigExt: ext{Healthcheck: &dockerspec.HealthcheckConfig{
				Test:     []string{"CMD-SHELL", "curl -f http://localhost/"},
				Interval: 5 * time.Second,
				Retries:  3,
			}}},
		},
		{
			name:       "HEALTHCHECK in exec form",
			dockerfile: "FROM scratch\nHEALTHCHECK CMD [\"/bin/check\", \"-q\"]\n",
			want: config{DockerOCIImageConfigExt: ext{Healthcheck: &dockerspec.HealthcheckConfig{
				Test: []string{"CMD", "/bin/check", "-q"},
			}}},
		},
		{
			name:       "HEALTHCHECK NONE turns an inherited check off",
			dockerfile: "FROM scratch AS base\nHEALTHCHECK CMD true\nFROM base\nHEALTHCHECK NONE\n",
			want: config{DockerOCIImageConfigExt: ext{Healthcheck: &dockerspec.HealthcheckConfig{
				Test: []string{"NONE"},
			}}},
		},
		{
			name:       "STOPSIGNAL by name",
			dockerfile: "FROM scratch\nSTOPSIGNAL SIGINT\n",
			want:       config{ImageConfig: image{StopSignal: "SIGINT"}},
		},
		{
			name:       "STOPSIGNAL by number, expanded",
			dockerfile: "FROM scratch\nARG SIG=9\nSTOPSIGNAL $SIG\n",
			want:       config{ImageConfig: image{StopSignal: "9"}},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, s := mustMetadata(t, tt.dockerfile, Request{Args: tt.args})
			if diff := cmp.Diff(tt.want, s.config.Config); diff != "" {
				t.Errorf("config (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMetadataInstructionErrors(t *testing.T) {
	for _, tt := range []struct {
		name, dockerfile, want string
	}{
		{
			name:       "STOPSIGNAL with a name that is no signal",
			dockerfile: "FROM scratch\nSTOPSIGNAL SIGNOPE\n",
			want:       `"SIGNOPE" is not a signal`,
		},
		{
			name:       "STOPSIGNAL with a variable that expands to nothing",
			dockerfile: "FROM scratch\nSTOPSIGNAL $NOPE\n",
			want:       `"" is not a signal`,
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := metadata(t, tt.dockerfile, Request{})
			if err == nil {
				t.Fatal("no error")
			}
			if diff := cmp.Diff(tt.want, err.Error()); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
		})
	}
}

func TestExposeAsDocker(t *testing.T) {
	// BuildKit's dispatchExpose splits an expanded word into ports, expands a range
	// into its ports and lower-cases the protocol (convert_expose.go).
	_, s := mustMetadata(t, "FROM scratch\nEXPOSE 8000-8001 53/UDP\n", Request{})
	want := map[string]struct{}{"8000/tcp": {}, "8001/tcp": {}, "53/udp": {}}
	if diff := cmp.Diff(want, s.config.Config.ExposedPorts); diff != "" {
		t.Errorf("ExposedPorts (-want +got):\n%s", diff)
	}
}

func TestMetadataHistory(t *testing.T) {
	_, s := mustMetadata(t, "FROM scratch\nARG A=1\nENV B=$A\nLABEL l=x\n", Request{})
	// ARG makes no history entry; the others an empty layer each, as written.
	want := []ocispec.History{
		{CreatedBy: "ENV B=$A", EmptyLayer: true, Comment: "crun-ci"},
		{CreatedBy: "LABEL l=x", EmptyLayer: true, Comment: "crun-ci"},
	}
	if diff := cmp.Diff(want, s.config.History); diff != "" {
		t.Errorf("history (-want +got):\n%s", diff)
	}
}

func TestCacheKey(t *testing.T) {
	const all = `FROM scratch AS base
ARG A=1
ARG TOKEN
ENV E=$A
WORKDIR /w
USER nobody
CMD ["c"]
ENTRYPOINT e
LABEL l=1
EXPOSE 80
VOLUME /v
HEALTHCHECK --interval=5s --timeout=2s CMD curl -f http://localhost/
SHELL ["/bin/bash", "-c"]
STOPSIGNAL SIGINT
FROM base
LABEL m=2
`
	key := func(t *testing.T, dockerfile string, r Request) string {
		t.Helper()
		_, s := mustMetadata(t, dockerfile, r)
		if s.key == "" {
			t.Fatal("no key")
		}
		return s.key.String()
	}
	t.Run("the same Dockerfile gives the same key", func(t *testing.T) {
		r := Request{Args: map[string]string{"A": "2"}, SecretArgs: map[string]string{"TOKEN": "t"}}
		if a, b := key(t, all, r), key(t, all, r); a != b {
			t.Errorf("keys differ: %s, %s", a, b)
		}
	})
	t.Run("the same after HEALTHCHECK alone", func(t *testing.T) {
		const f = "FROM scratch\nHEALTHCHECK --interval=5s CMD true\n"
		if a, b := key(t, f, Request{}), key(t, f, Request{}); a != b {
			t.Errorf("keys differ: %s, %s", a, b)
		}
	})
	t.Run("a comment that moves the lines does not change the key", func(t *testing.T) {
		if a, b := key(t, all, Request{}), key(t, "# moved\n\n"+all, Request{}); a != b {
			t.Errorf("keys differ: %s, %s", a, b)
		}
	})
	for _, tt := range []struct {
		name   string
		a, b   string
		ra, rb Request
		same   bool
	}{
		{
			name: "an ENV value changes the key",
			a:    "FROM scratch\nENV A=1\n",
			b:    "FROM scratch\nENV A=2\n",
		},
		{
			name: "an ENV value from a build argument changes the key",
			a:    "FROM scratch\nARG V\nENV A=$V\n",
			b:    "FROM scratch\nARG V\nENV A=$V\n",
			ra:   Request{Args: map[string]string{"V": "1"}},
			rb:   Request{Args: map[string]string{"V": "2"}},
		},
		{
			name: "a plain build argument's value changes the key",
			a:    all,
			b:    all,
			ra:   Request{Args: map[string]string{"TOKEN": "one"}},
			rb:   Request{Args: map[string]string{"TOKEN": "two"}},
		},
		{
			// Two projects with different secrets never share a layer.
			name: "a secret build argument's value changes the key",
			a:    all,
			b:    all,
			ra:   Request{SecretArgs: map[string]string{"TOKEN": "one"}},
			rb:   Request{SecretArgs: map[string]string{"TOKEN": "two"}},
		},
		{
			name: "the same secret gives the same key",
			a:    all,
			b:    all,
			ra:   Request{SecretArgs: map[string]string{"TOKEN": "one"}},
			rb:   Request{SecretArgs: map[string]string{"TOKEN": "one"}},
			same: true,
		},
		{
			name: "a secret taken into an ENV value changes the key",
			a:    "FROM scratch\nARG TOKEN\nENV T=$TOKEN\n",
			b:    "FROM scratch\nARG TOKEN\nENV T=$TOKEN\n",
			ra:   Request{SecretArgs: map[string]string{"TOKEN": "one"}},
			rb:   Request{SecretArgs: map[string]string{"TOKEN": "two"}},
		},
		{
			name: "a build argument no ARG declares does not change the key",
			a:    all,
			b:    all,
			rb:   Request{Args: map[string]string{"OTHER": "x"}},
			same: true,
		},
		{
			name: "the HEALTHCHECK interval changes the key",
			a:    "FROM scratch\nHEALTHCHECK --interval=5s CMD true\n",
			b:    "FROM scratch\nHEALTHCHECK --interval=6s CMD true\n",
		},
		{
			name: "the order of instructions changes the key",
			a:    "FROM scratch\nUSER a\nWORKDIR /w\n",
			b:    "FROM scratch\nWORKDIR /w\nUSER a\n",
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a, b := key(t, tt.a, tt.ra), key(t, tt.b, tt.rb)
			if same := a == b; same != tt.same {
				t.Errorf("keys %s and %s: same = %v, want %v", a, b, same, tt.same)
			}
		})
	}
}

// testCacheSecret is the cache secret of the unit tests' builders.
var testCacheSecret = bytes.Repeat([]byte{7}, 32)

func TestKeyOf(t *testing.T) {
	x := &run{b: &Builder{CacheSecret: testCacheSecret}, r: Request{Args: map[string]string{"A": "1"}, SecretArgs: map[string]string{"S": "hush", "L": "hush-longer"}}}
	if got := x.keyOf("A", "1"); got != "A=1" {
		t.Errorf("keyOf(A) = %q, want A=1", got)
	}
	mac := hmac.New(sha256.New, testCacheSecret)
	mac.Write([]byte("hush"))
	tag := "hmac-sha256:" + hex.EncodeToString(mac.Sum(nil))
	if got := x.keyOf("S", "hush"); got != "S="+tag {
		t.Errorf("keyOf(S) = %q, want S=%s", got, tag)
	}
	// A value that an instruction took in is replaced in the key's text; the longer
	// secret whole, not as the shorter one plus the rest.
	if got, want := x.key("ENV", "X=hush"), digest.FromString("ENV\x00X="+tag); got != want {
		t.Errorf("key of a text with a secret = %s, want %s", got, want)
	}
	if got, want := x.key("X=hush-longer"), digest.FromString("X="+x.secretTag("hush-longer")); got != want {
		t.Errorf("key of a text with the longer secret = %s, want %s", got, want)
	}
	// Secrets that a tag holds (hex digits, the letters of "hmac-sha256") are not
	// looked for in another secret's tag: the key is the same whatever the order.
	y := &run{b: &Builder{CacheSecret: testCacheSecret}, r: Request{SecretArgs: map[string]string{"N": "1", "L": "a", "E": "e"}}}
	if got, want := y.key("N=1 L=a E=e"), digest.FromString("N="+y.secretTag("1")+" L="+y.secretTag("a")+" E="+y.secretTag("e")); got != want {
		t.Errorf("key of a text with secrets that tags hold = %s, want %s", got, want)
	}
	other := &run{b: &Builder{CacheSecret: bytes.Repeat([]byte{8}, 32)}, r: x.r}
	if x.keyOf("S", "hush") == other.keyOf("S", "hush") {
		t.Error("two hosts' cache secrets give the same tag")
	}
}

func TestParseSize(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int64
	}{
		{"500MB", 500e6},
		{"2GiB", 2 << 30},
		{"1g", 1 << 30},
		{"1.5k", 1536},
		{"0", 0},
		{"1048576", 1048576},
		{"100b", 100},
		{" 10 kb ", 10000},
		{"3TB", 3e12},
	} {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseSize(tt.in)
			if err != nil || got != tt.want {
				t.Errorf("ParseSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
			}
		})
	}
	for _, in := range []string{"lots", "-1", "", "MB", "1 2"} {
		t.Run("bad "+in, func(t *testing.T) {
			got, err := ParseSize(in)
			want := `size "` + in + `": want a number of bytes, optionally with a unit (500MB, 2GiB)`
			if err == nil || err.Error() != want {
				t.Errorf("ParseSize(%q) = %d, %v; want error %s", in, got, err, want)
			}
		})
	}
	for _, in := range []string{"nan", "inf", "1e30"} {
		t.Run("not a size "+in, func(t *testing.T) {
			if got, err := ParseSize(in); err == nil {
				t.Errorf("ParseSize(%q) = %d, want an error", in, got)
			}
		})
	}
}

// TestParseSizeWhereGoUnitsDiffers pins the cases where go-units' parsers would answer
// differently, so that ParseSize cannot quietly become one of them, and the neighbours
// where they agree (a number is whatever strconv.ParseFloat reads).
func TestParseSizeWhereGoUnitsDiffers(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int64 // -1: an error
	}{
		{"2kib", 2 << 10},                   // FromHumanSize: 2000
		{"2kb", 2000},                       // RAMInBytes: 2048
		{"1p", -1},                          // both: a petabyte or pebibyte
		{"1pb", -1},                         // both: a petabyte or pebibyte
		{"9223372036854775807", -1},         // both: the float 2^63 does not fit an int64
		{"8e18", 8e18},                      // fits
		{"8.5eb", -1},                       // exa is not a unit in either
		{"10  kb", 10000},                   // go-units: two spaces are not a number
		{"10\tkb", 10000},                   // go-units: a tab is not a separator
		{"1e3k", 1000 << 10},                // an exponent is a number
		{"0x1p10", 1024},                    // and so is a hexadecimal float
		{strings.Repeat("9", 30) + "t", -1}, // the product overflows
	} {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseSize(tt.in)
			switch {
			case tt.want == -1 && err == nil:
				t.Errorf("ParseSize(%q) = %d, want an error", tt.in, got)
			case tt.want != -1 && (err != nil || got != tt.want):
				t.Errorf("ParseSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestRemoveStubs(t *testing.T) {
	for _, tt := range []struct {
		name  string
		tree  []string
		stubs []string
		want  []string
	}{
		{
			name:  "an empty file and the directories made for it go",
			tree:  []string{"bin/sh=#!", ".crun-ci/crun-ci="},
			stubs: []string{"/.crun-ci/crun-ci", "/.crun-ci"},
			want:  []string{"bin/", "bin/sh"},
		},
		{
			name:  "empty directories go up the chain",
			tree:  []string{"a/b/c/"},
			stubs: []string{"/a", "/a/b/c", "/a/b"},
			want:  nil,
		},
		{
			name:  "an empty directory the image had stays",
			tree:  []string{"etc/", "etc/hosts="},
			stubs: []string{"/etc/hosts"},
			want:  []string{"etc/"},
		},
		{
			name:  "a directory that holds something else stays",
			tree:  []string{"etc/passwd=root", "etc/hosts="},
			stubs: []string{"/etc/hosts"},
			want:  []string{"etc/", "etc/passwd"},
		},
		{
			name:  "a file the command wrote stays",
			tree:  []string{"etc/hosts=127.0.0.1 localhost"},
			stubs: []string{"/etc/hosts"},
			want:  []string{"etc/", "etc/hosts"},
		},
		{
			name:  "a directory the command filled stays",
			tree:  []string{"data/out=x"},
			stubs: []string{"/data"},
			want:  []string{"data/", "data/out"},
		},
		{
			name:  "a stub that is gone is no error",
			tree:  []string{"keep/x=1"},
			stubs: []string{"/gone/deeper"},
			want:  []string{"keep/", "keep/x"},
		},
		{
			name:  "a stub behind a symbolic link goes at its target, the link stays",
			tree:  []string{"target/", "link->target"},
			stubs: []string{"/link"},
			want:  []string{"link"},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			makeTree(t, root, tt.tree...)
			if err := removeStubs(root, tt.stubs); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, listTree(t, root)); diff != "" {
				t.Errorf("tree (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMissingPaths(t *testing.T) {
	root := t.TempDir()
	makeTree(t, root, "etc/passwd=root", "link->etc")
	for _, tt := range []struct {
		path string
		want []string
	}{
		{"/etc/hosts", []string{"/etc/hosts"}},
		{"/etc/passwd", nil},
		{"/.crun-ci/crun-ci", []string{"/.crun-ci/crun-ci", "/.crun-ci"}},
		{"/link/resolv.conf", []string{"/link/resolv.conf"}},
		{"/dev/shm", []string{"/dev/shm", "/dev"}},
	} {
		got, err := missingPaths(root, tt.path)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("missingPaths(%q) (-want +got):\n%s", tt.path, diff)
		}
	}
}

func TestRemoveStubsStaysInside(t *testing.T) {
	root, outside := t.TempDir(), t.TempDir()
	makeTree(t, root, "link->"+outside, "up->../../..")
	if err := removeStubs(root, []string{"/link", "/up"}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(outside); err != nil {
		t.Errorf("the directory outside the root: %v", err)
	}
	if diff := cmp.Diff([]string{"link", "up"}, listTree(t, root)); diff != "" {
		t.Errorf("tree (-want +got):\n%s", diff)
	}
}

// listTree lists what is below root, directories with a trailing slash, in lexical
// order.
func listTree(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		if d.IsDir() {
			rel += "/"
		}
		out = append(out, filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestChownIDs(t *testing.T) {
	root := t.TempDir()
	makeTree(t, root,
		"etc/passwd=root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65533:nobody:/:/sbin/nologin\napp:x:1000:1000::/home/app:/bin/sh\n",
		"etc/group=root:x:0:\nnogroup:x:65533:\nstaff:x:50:\n")
	for _, tt := range []struct {
		chown    string
		uid, gid int
		wantErr  string
	}{
		{chown: "", uid: 0, gid: 0},
		{chown: "nobody:nogroup", uid: 65534, gid: 65533},
		{chown: "1000", uid: 1000, gid: 1000},
		{chown: "1000:50", uid: 1000, gid: 50},
		{chown: "app:staff", uid: 1000, gid: 50},
		{chown: "nobody", uid: 65534, gid: 65534}, // the uid as gid, as Docker does
		{chown: "4242", uid: 4242, gid: 4242},
		{chown: "4242:4343", uid: 4242, gid: 4343},
		{chown: "ghost", wantErr: `--chown=ghost: user "ghost": no such user in the image's /etc/passwd`},
		{chown: "ghost:staff", wantErr: `--chown=ghost:staff: user "ghost": no such user in the image's /etc/passwd`},
		{chown: "nobody:ghosts", wantErr: `--chown=nobody:ghosts: no group "ghosts" in the image's /etc/group`},
	} {
		t.Run(tt.chown, func(t *testing.T) {
			uid, gid, err := chownIDs(root, tt.chown)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("chownIDs(%q) = %d, %d, %v; want error %s", tt.chown, uid, gid, err, tt.wantErr)
				}
				return
			}
			if err != nil || uid != tt.uid || gid != tt.gid {
				t.Errorf("chownIDs(%q) = %d, %d, %v; want %d, %d", tt.chown, uid, gid, err, tt.uid, tt.gid)
			}
		})
	}
}

func TestChownIDsWithoutPasswd(t *testing.T) {
	root := t.TempDir()
	uid, gid, err := chownIDs(root, "1000:1000")
	if err != nil || uid != 1000 || gid != 1000 {
		t.Errorf("chownIDs(1000:1000) = %d, %d, %v; want 1000, 1000", uid, gid, err)
	}
	if _, _, err := chownIDs(root, "app"); err == nil {
		t.Error("chownIDs(app) without /etc/passwd: no error")
	}
}

func TestLineOfAndStripLine(t *testing.T) {
	located := parser.WithLocation(errors.New("boom"), []parser.Range{{Start: parser.Position{Line: 7}, End: parser.Position{Line: 8}}})
	for _, tt := range []struct {
		name     string
		err      error
		line     int
		stripped string
	}{
		{
			name:     "an error with a location gives its first line",
			err:      located,
			line:     7,
			stripped: "boom",
		},
		{
			name:     "a wrapped located error still gives its line",
			err:      errors.Join(errors.New("outer"), located),
			line:     7,
			stripped: "outer\nboom",
		},
		{
			name:     "an error without location gives 0",
			err:      errors.New("dockerfile parse error on line 4: unknown instruction: FETCH"),
			line:     0,
			stripped: "unknown instruction: FETCH",
		},
		{
			name:     "a location without ranges gives 0",
			err:      parser.WithLocation(errors.New("x"), nil),
			line:     0,
			stripped: "x",
		},
		{
			name:     "the prefix is dropped only at the start",
			err:      errors.New("COPY: dockerfile parse error on line 4: x"),
			line:     0,
			stripped: "COPY: dockerfile parse error on line 4: x",
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := lineOf(tt.err); got != tt.line {
				t.Errorf("lineOf = %d, want %d", got, tt.line)
			}
			if diff := cmp.Diff(tt.stripped, stripLine(tt.err)); diff != "" {
				t.Errorf("stripLine (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLineOfAndStripLineOnParserErrors(t *testing.T) {
	for _, tt := range []struct {
		name, dockerfile string
		line             int
		stripped         string
	}{
		{
			name:       "an unknown instruction",
			dockerfile: "FROM scratch\n\nFETCH x\n",
			line:       3,
			stripped:   "unknown instruction: FETCH",
		},
		{
			name:       "an instruction missing its arguments",
			dockerfile: "FROM scratch\nUSER\n",
			line:       2,
			stripped:   "USER requires exactly one argument",
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := parseInstructions(tt.dockerfile)
			if err == nil {
				t.Fatal("no error")
			}
			if got := lineOf(err); got != tt.line {
				t.Errorf("lineOf(%v) = %d, want %d", err, got, tt.line)
			}
			if diff := cmp.Diff(tt.stripped, stripLine(err)); diff != "" {
				t.Errorf("stripLine (-want +got):\n%s", diff)
			}
		})
	}
}

// parseInstructions runs BuildKit's parsers on text as parse does and returns the
// first error unchanged.
func parseInstructions(text string) error {
	ast, err := parser.Parse(strings.NewReader(text))
	if err != nil {
		return err
	}
	_, _, err = instructions.Parse(ast.AST, nil)
	return err
}

func TestTheCacheSecretIsMadeOnceAndWhole(t *testing.T) {
	dir := t.TempDir()
	var wg sync.WaitGroup
	got := make([][]byte, 8)
	for i := range got {
		wg.Go(func() {
			s, err := LoadCacheSecret(dir)
			if err != nil {
				t.Error(err)
			}
			got[i] = s
		})
	}
	wg.Wait()
	for _, s := range got[1:] {
		if !bytes.Equal(s, got[0]) || len(s) != 32 {
			t.Fatalf("secrets %x and %x: want one of 32 bytes", got[0], s)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("%d files in the state directory, want the secret alone", len(entries))
	}
	os.Chmod(filepath.Join(dir, CacheSecretFile), 0o644)
	if _, err := LoadCacheSecret(dir); err == nil || !strings.Contains(err.Error(), "lets others read it") {
		t.Errorf("a secret others may read: %v", err)
	}
}
