package secrets

import (
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// MemFile returns an in-memory file (memfd) holding dotenv, for an app
// that insists on reading a .env file: nothing touches a disk. The file is
// sealed (no write, grow, shrink, or further sealing), close-on-exec, and
// positioned at offset 0.
//
// Pass it to the child in exec.Cmd.ExtraFiles; the first extra file is
// the child's descriptor 3, so the app reads /dev/fd/3. Opening that path
// gives the child its own offset; a child that reads descriptor 3
// directly shares this file's offset, so do not read the file in the
// parent first. Close it in the parent once the child has started.
func MemFile(dotenv []byte) (*os.File, error) {
	fd, err := unix.MemfdCreate("eeveon-dotenv", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("create in-memory env file: %w", err)
	}
	f := os.NewFile(uintptr(fd), "memfd:eeveon-dotenv")
	fail := func(err error) (*os.File, error) {
		f.Close()
		return nil, fmt.Errorf("create in-memory env file: %w", err)
	}
	if _, err := f.Write(dotenv); err != nil {
		return fail(err)
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return fail(err)
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		_, serr = unix.FcntlInt(fd, unix.F_ADD_SEALS,
			unix.F_SEAL_WRITE|unix.F_SEAL_GROW|unix.F_SEAL_SHRINK|unix.F_SEAL_SEAL)
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return fail(fmt.Errorf("seal: %w", err))
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fail(err)
	}
	return f, nil
}
