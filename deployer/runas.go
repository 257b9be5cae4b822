package deployer

import (
	"golang.org/x/sys/unix"

	"errors"
	"fmt"
	"github.com/eeveon/eeveon/deployer/internal/cgroup"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
)

// runAs is the Unix user that build and health commands run as when the
// config says run_as: a user without access to the data dir, so that the
// code a deployer pushes cannot read the keys or the secrets store, nor
// speak to the control socket, and so cannot make itself admin.
type runAs struct {
	name     string
	uid, gid uint32
	home     string
}

// SetRunAs makes build and health commands run as the named user. The
// server must run as root to switch users.
func (e *Engine) SetRunAs(name string) error {
	if name == "" {
		e.ws.runAs = nil
		return nil
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("run_as = %q needs the server to run as root (it switches to that user for builds)", name)
	}
	u, err := user.Lookup(name)
	if err != nil {
		return fmt.Errorf("run_as: %w", err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return fmt.Errorf("run_as: user %s has no numeric uid/gid", name)
	}
	if uid == 0 {
		return errors.New("run_as: the build user must not be root")
	}
	e.ws.runAs = &runAs{name: name, uid: uint32(uid), gid: uint32(gid), home: u.HomeDir}
	return nil
}

// handOver gives the checked-out tree in dir to the run_as user, so that
// its build may write there. A site inside the data dir cannot be reached
// by that user at all (the data dir is 0700), which is said plainly.
func (w *workspace) handOver(dir string) error {
	if rel, err := filepath.Rel(w.data.Dir, dir); err == nil && !strings.HasPrefix(rel, "..") {
		return fmt.Errorf("with run_as, a site's path must be outside the data dir (only the service user may enter %s); give it one with eeveon site set NAME --path /srv/NAME", w.data.Dir)
	}
	return chownTree(dir, int(w.runAs.uid), int(w.runAs.gid))
}

// chownTree gives dir and everything below it to uid:gid without ever
// following a symbolic link, though the tree's owner may change it while
// this runs (a process of the build user swapping a directory for a link
// to /etc between the read of a directory and the descent into it): it
// walks by file descriptors, opening each directory relative to its parent
// with O_NOFOLLOW, and changes each entry with AT_SYMLINK_NOFOLLOW, so a
// link is changed itself, never what it points at. It runs as root.
func chownTree(dir string, uid, gid int) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("hand %s over: %w", dir, err)
	}
	if err := unix.Fchown(fd, uid, gid); err != nil {
		unix.Close(fd)
		return fmt.Errorf("hand %s over: %w", dir, err)
	}
	return chownBelow(fd, dir, uid, gid)
}

// chownBelow changes the entries of the directory open as fd (and closes
// it); path is for messages only.
func chownBelow(fd int, path string, uid, gid int) error {
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	ents, err := f.ReadDir(-1)
	if err != nil {
		return fmt.Errorf("hand %s over: %w", path, err)
	}
	for _, e := range ents {
		name := e.Name()
		if err := unix.Fchownat(fd, name, uid, gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue // removed meanwhile
			}
			return fmt.Errorf("hand %s over: %w", filepath.Join(path, name), err)
		}
		if !e.IsDir() {
			continue
		}
		sub, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ENOENT) {
			continue // no longer a directory: not descended into
		}
		if err != nil {
			return fmt.Errorf("hand %s over: %w", filepath.Join(path, name), err)
		}
		if err := chownBelow(sub, filepath.Join(path, name), uid, gid); err != nil {
			return err
		}
	}
	return nil
}

// ContainCommands puts every site command (build, health command, and in
// time the apps) in a cgroup of its own that ends with it, so that nothing
// a deployer's code starts outlives its step. The daemon calls it once it
// holds the data dir: it also ends what a killed server left running.
func (e *Engine) ContainCommands() error {
	m, err := cgroup.Open(e.data.Dir)
	if err != nil {
		return err
	}
	e.ws.cgroups = m
	return nil
}
