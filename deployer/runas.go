package deployer

import (
	"errors"
	"fmt"
	"github.com/eeveon/eeveon/deployer/internal/cgroup"
	"io/fs"
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
	return filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, int(w.runAs.uid), int(w.runAs.gid))
	})
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
