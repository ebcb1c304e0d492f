package secrets

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// The hand-off moves secret environment variables into a container without writing them
// into its runtime spec, which containerd keeps on disk. crun-ci makes a FIFO (which
// holds no data on disk), keeps it open for reading and writing so that what it writes
// waits in the pipe, writes Encode's output to it, and runs the container's process as
// `crun-ci exec-env FIFO -- ARGS…`; that reads Decode's input from the FIFO (mounted into
// the container) and execs ARGS with the variables added to its environment.

// EncodeEnv returns entries (KEY=VALUE) as the hand-off writes them: a decimal length
// and a newline, then the entries, each ended by a NUL byte.
func EncodeEnv(entries []string) []byte {
	var body bytes.Buffer
	for _, e := range entries {
		body.WriteString(e)
		body.WriteByte(0)
	}
	return append([]byte(strconv.Itoa(body.Len())+"\n"), body.Bytes()...)
}

// DecodeEnv reads what EncodeEnv wrote, and no more (the writer keeps the FIFO open).
func DecodeEnv(r io.Reader) ([]string, error) {
	br := bufio.NewReader(r)
	head, err := br.ReadString('\n')
	if err != nil {
		return nil, fmt.Errorf("read secret environment: %w", err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(head))
	if err != nil || n < 0 || n > 64<<20 {
		return nil, errors.New("read secret environment: bad length")
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(br, body); err != nil {
		return nil, fmt.Errorf("read secret environment: %w", err)
	}
	var out []string
	for _, e := range bytes.Split(body, []byte{0}) {
		if len(e) > 0 {
			out = append(out, string(e))
		}
	}
	return out, nil
}

// ReadEnvFile reads the hand-off from the FIFO at path.
func ReadEnvFile(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read secret environment: %w", err)
	}
	defer f.Close()
	return DecodeEnv(f)
}
