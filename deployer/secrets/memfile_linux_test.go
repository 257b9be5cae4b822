package secrets

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"testing"

	"golang.org/x/sys/unix"
)

func TestMemFile(t *testing.T) {
	dotenv := FormatDotenv(map[string]string{"TOKEN": "memfile-token-Wq5", "MULTI": "a\nb \"c\""})
	f, err := MemFile(dotenv)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	// The child reads it as /dev/fd/3.
	cmd := exec.Command("cat", "/dev/fd/3")
	cmd.ExtraFiles = []*os.File{f}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("cat /dev/fd/3: %v (%s)", err, stderr.String())
	}
	if !bytes.Equal(out, dotenv) {
		t.Fatalf("child read %s, want %s", fp(string(out)), fp(string(dotenv)))
	}

	// So does this process, through /proc.
	b, err := os.ReadFile(fmt.Sprintf("/proc/self/fd/%d", f.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, dotenv) {
		t.Fatalf("/proc/self/fd read %s, want %s", fp(string(b)), fp(string(dotenv)))
	}

	// It is at offset 0 and sealed.
	b, err = io.ReadAll(f)
	if err != nil || !bytes.Equal(b, dotenv) {
		t.Fatalf("reading the file from its offset: %s, %v", fp(string(b)), err)
	}
	if _, err := f.WriteAt([]byte("X"), 0); err == nil {
		t.Error("write to the sealed file succeeded")
	}
	if err := f.Truncate(0); err == nil {
		t.Error("truncate of the sealed file succeeded")
	}
	seals, err := unix.FcntlInt(f.Fd(), unix.F_GET_SEALS, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := unix.F_SEAL_WRITE | unix.F_SEAL_GROW | unix.F_SEAL_SHRINK | unix.F_SEAL_SEAL
	if seals&want != want {
		t.Errorf("seals = %#x, want %#x", seals, want)
	}
	flags, err := unix.FcntlInt(f.Fd(), unix.F_GETFD, 0)
	if err != nil || flags&unix.FD_CLOEXEC == 0 {
		t.Errorf("descriptor is not close-on-exec (flags %#x, %v)", flags, err)
	}
	b, _ = os.ReadFile(fmt.Sprintf("/proc/self/fd/%d", f.Fd()))
	if !bytes.Equal(b, dotenv) {
		t.Errorf("content changed after the failed writes")
	}
}

func TestMemFileEmpty(t *testing.T) {
	f, err := MemFile(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil || len(b) != 0 {
		t.Fatalf("empty MemFile read %d bytes, %v", len(b), err)
	}
}
