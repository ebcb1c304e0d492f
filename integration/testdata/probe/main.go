// Command probe tries, from inside a step, what the host's kernel must refuse a
// container, and prints one line per try: "NAME: allowed" or "NAME: refused (ERRNO)".
// The integration tests build it statically and run it in a busybox step.
package main

import (
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

func main() {
	try := func(name string, fn func() error) {
		if err := fn(); err != nil {
			fmt.Printf("%s: refused (%v)\n", name, err)
			return
		}
		fmt.Printf("%s: allowed\n", name)
	}
	try("add_key", func() error {
		_, err := unix.AddKey("user", "crun-ci-probe", []byte("x"), unix.KEY_SPEC_PROCESS_KEYRING)
		return err
	})
	try("keyctl", func() error {
		_, err := unix.KeyctlGetKeyringID(unix.KEY_SPEC_SESSION_KEYRING, false)
		return err
	})
	try("perf_event_open", func() error {
		attr := unix.PerfEventAttr{Type: unix.PERF_TYPE_SOFTWARE, Config: unix.PERF_COUNT_SW_CPU_CLOCK}
		attr.Size = uint32(unsafe.Sizeof(attr))
		fd, err := unix.PerfEventOpen(&attr, 0, -1, -1, 0)
		if err == nil {
			unix.Close(fd)
		}
		return err
	})
	try("io_uring_setup", func() error {
		var params [120]byte
		fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, 1, uintptr(unsafe.Pointer(&params[0])), 0)
		if errno != 0 {
			return errno
		}
		unix.Close(int(fd))
		return nil
	})
	os.Exit(0)
}
