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
// to /etc between the read of a directory and the descent into it): see
// walkNoFollow; each entry is changed with AT_SYMLINK_NOFOLLOW, so a link
// is changed itself, never what it points at. It runs as root.
func chownTree(dir string, uid, gid int) error {
	return walkNoFollow(dir,
		func(fd int) error { return unix.Fchown(fd, uid, gid) },
		func(parent int, name string) error {
			return unix.Fchownat(parent, name, uid, gid, unix.AT_SYMLINK_NOFOLLOW)
		})
}

// maxTreeDepth bounds the directories walkNoFollow descends (one open file
// each): a tree deeper than this is refused, not walked.
const maxTreeDepth = 256

// walkNoFollow walks the tree at dir by file descriptors: each directory
// is opened relative to its parent with O_NOFOLLOW, so a link that takes
// a directory's place is never descended, whatever changes the tree while
// the walk runs. onDir gets each directory's descriptor (dir's included),
// onEntry each entry below one, by its parent's descriptor and its name.
// An entry gone meanwhile is skipped.
func walkNoFollow(dir string, onDir func(fd int) error, onEntry func(parent int, name string) error) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("walk %s: %w", dir, err)
	}
	return walkBelow(fd, dir, 0, onDir, onEntry)
}

func walkBelow(fd int, path string, depth int, onDir func(int) error, onEntry func(int, string) error) error {
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	if depth > maxTreeDepth {
		return fmt.Errorf("walk %s: deeper than %d directories", path, maxTreeDepth)
	}
	if onDir != nil {
		if err := onDir(fd); err != nil {
			return fmt.Errorf("walk %s: %w", path, err)
		}
	}
	ents, err := f.ReadDir(-1)
	if err != nil {
		return fmt.Errorf("walk %s: %w", path, err)
	}
	for _, e := range ents {
		name := e.Name()
		if onEntry != nil {
			if err := onEntry(fd, name); err != nil && !errors.Is(err, unix.ENOENT) {
				return fmt.Errorf("walk %s: %w", filepath.Join(path, name), err)
			}
		}
		if !e.IsDir() {
			continue
		}
		sub, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ENOENT) {
			continue // no longer a directory: not descended into
		}
		if err != nil {
			return fmt.Errorf("walk %s: %w", filepath.Join(path, name), err)
		}
		if err := walkBelow(sub, filepath.Join(path, name), depth+1, onDir, onEntry); err != nil {
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
	if m == nil {
		return err
	}
	e.ws.cgroups = m
	if err != nil {
		e.log.Warn("left by the previous server and not ended yet", "err", err)
	}
	return nil
}
