package integration

import (
	"bytes"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// Output under pressure: a step printing 200 MB, one long line without a newline, binary
// bytes, or 1 MB lines neither grows crun-ci's memory nor loses the last bytes.
func TestOutputUnderPressureKeepsMemoryBoundedAndTheLastBytes(t *testing.T) {
	requireRoot(t)
	if testing.Short() {
		t.Skip("prints several hundred MB; skipped with -short")
	}
	const line = "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"
	dir := project(t, map[string]string{
		"codeship-services.yml": "app:\n  image: busybox\n  volumes: [./in:/in]\n",
		"codeship-steps.yml": `
- name: lines
  service: app
  command: sh -c 'yes ` + line + ` | head -c 200000000; echo END-lines'
- name: no-newline
  service: app
  command: sh -c 'head -c 50000000 /dev/zero | tr "\0" x; echo END-no-newline'
- name: binary
  service: app
  command: sh -c 'cat /in/random.bin; echo; echo END-binary'
- name: megabyte-lines
  service: app
  command: sh -c 'for i in 1 2 3 4 5 6 7 8 9 10; do head -c 1048576 /dev/zero | tr "\0" y; echo; done; echo END-megabyte-lines'
`,
	})
	random := make([]byte, 20<<20)
	rand.Read(random)
	if err := os.MkdirAll(filepath.Join(dir, "in"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "in/random.bin"), random, 0o644); err != nil {
		t.Fatal(err)
	}

	out, err := os.Create(filepath.Join(t.TempDir(), "stdout"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd := exec.Command(bin, "--address", filepath.Join(filepath.Dir(stateDir), "none.sock"), "--state-dir", stateDir, "steps", "--dir", dir, "--max-parallel", "1")
	cmd.Stdout = out
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("crun-ci: %v\n%s", err, stderr.String())
	}
	assertClean(t)
	maxRSS := cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss // KiB
	t.Logf("crun-ci's peak memory: %d MiB", maxRSS/1024)
	if maxRSS > 100<<10 {
		t.Errorf("crun-ci's peak memory was %d MiB, want at most 100", maxRSS/1024)
	}
	st, _ := out.Stat()
	t.Logf("output: %d MB", st.Size()>>20)

	// Read the output back in pieces: count the lines of each step and check its end.
	if _, err := out.Seek(0, 0); err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	var ends []string
	tail := map[string][]byte{}
	buf := make([]byte, 4<<20)
	var rest []byte
	for {
		n, err := out.Read(buf)
		data := append(rest, buf[:n]...)
		for {
			i := bytes.IndexByte(data, '\n')
			if i < 0 {
				break
			}
			l := data[:i]
			data = data[i+1:]
			step, payload, ok := bytes.Cut(l, []byte(" | "))
			if !ok {
				continue
			}
			name := strings.SplitN(string(step), "/", 2)[0]
			counts[name]++
			if i := bytes.Index(payload, []byte("END-")); i >= 0 && string(payload[i:]) == "END-"+name {
				ends = append(ends, string(payload[i:]))
			}
			if name == "binary" {
				tail["binary"] = append(tail["binary"], payload...)
				if len(tail["binary"]) > 1<<20 {
					tail["binary"] = tail["binary"][len(tail["binary"])-(1<<20):]
				}
			}
		}
		rest = append([]byte(nil), data...)
		if err != nil {
			break
		}
	}
	want := []string{"END-lines", "END-no-newline", "END-binary", "END-megabyte-lines"}
	if strings.Join(ends, ",") != strings.Join(want, ",") {
		t.Errorf("end markers %v, want %v", ends, want)
	}
	// 200,000,000 bytes of 101-byte lines: 1,980,198 whole lines, then 2 bytes that the
	// marker completes.
	if got := counts["lines"]; got != 1980198+1 {
		t.Errorf("step lines printed %d lines, want %d", got, 1980198+1)
	}
	// 50 MB without a newline, and the marker, come out in 64 KiB pieces.
	if got, want := counts["no-newline"], (50000000+len("END-no-newline")+65535)/65536; got != want {
		t.Errorf("step no-newline printed %d lines, want %d", got, want)
	}
	// Ten 1 MiB lines are 16 pieces each.
	if got := counts["megabyte-lines"]; got != 10*16+1 {
		t.Errorf("step megabyte-lines printed %d lines, want %d", got, 10*16+1)
	}
	// The last bytes of the binary file arrived (newlines in it only split lines).
	last := random[len(random)-4096:]
	if i := bytes.LastIndexByte(last, '\n'); i >= 0 {
		last = last[i+1:]
	}
	if !bytes.Contains(tail["binary"], last) {
		t.Errorf("the last %d bytes of the binary output are missing", len(last))
	}
}
