// Package cgroup puts the processes of a site's steps and apps into cgroup
// v2 groups of their own, so that the end of a step or of a colour ends
// every process it started: setsid, double forks and daemons included (a
// process group and the parent-death signal reach none of those).
//
// It works on the unified hierarchy, mounted at /sys/fs/cgroup (pure v2)
// or beside the v1 controllers (the hybrid "unified" mount): each eeveon
// data dir gets a subtree below the cgroup the server runs in; a process
// is started straight into its group (clone3 CLONE_INTO_CGROUP), and a
// group is ended with cgroup.kill (Linux 5.14), else by killing its
// members until none is left.
package cgroup

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// Manager owns the subtree of one eeveon data dir.
type Manager struct {
	root string
	seq  atomic.Uint64
}

// Open finds the unified hierarchy and makes the subtree for the data dir
// dataDir (named after a hash of its path, so that servers of other data
// dirs on the machine are left alone). What a previous server of the same
// data dir left there (it was killed) is killed and removed; should some
// of it not go, Open returns the manager with that error, to be logged.
func Open(dataDir string) (*Manager, error) {
	mount, err := unifiedMount()
	if err != nil {
		return nil, err
	}
	own, err := ownCgroup()
	if err != nil {
		return nil, err
	}
	abs, _ := filepath.Abs(dataDir)
	sum := sha256.Sum256([]byte(abs))
	root := filepath.Join(mount, own, "eeveon-"+hex.EncodeToString(sum[:6]))
	if err := os.Mkdir(root, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("cgroup: create %s: %w", root, err)
	}
	m := &Manager{root: root}
	// What will not go now is tried again at the next start; it does not
	// take containment away from this one.
	sweepErr := m.sweep(root)
	// A group to probe with: clone3 into a cgroup must work here.
	g, err := m.New("probe")
	if err != nil {
		return nil, err
	}
	defer g.Remove()
	if err := probe(g); err != nil {
		return nil, fmt.Errorf("cgroup: start a process into a group: %w", err)
	}
	return m, sweepErr
}

// Close ends every group of the subtree and removes it: the server stops.
func (m *Manager) Close() error {
	if err := m.sweep(m.root); err != nil {
		return err
	}
	if err := syscall.Rmdir(m.root); err != nil && !errors.Is(err, syscall.ENOENT) {
		return fmt.Errorf("cgroup: remove %s: %w", m.root, err)
	}
	return nil
}

// sweep kills and removes every group below dir.
func (m *Manager) sweep(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("cgroup: %w", err)
	}
	for _, e := range ents {
		if e.IsDir() {
			g := &Group{path: filepath.Join(dir, e.Name())}
			if err := m.sweep(g.path); err != nil {
				return err
			}
			if err := g.Remove(); err != nil {
				return err
			}
		}
	}
	return nil
}

// Group is one cgroup.
type Group struct {
	path string
	dir  *os.File // open for CgroupFD while the group is in use
}

// New makes a group below the subtree, named after name and unique.
func (m *Manager) New(name string) (*Group, error) {
	name = strings.Map(func(r rune) rune {
		if r == '/' || r == 0 || r == '\n' {
			return '_'
		}
		return r
	}, name)
	path := filepath.Join(m.root, fmt.Sprintf("%s.%d", name, m.seq.Add(1)))
	if err := os.Mkdir(path, 0o755); err != nil {
		return nil, fmt.Errorf("cgroup: create %s: %w", path, err)
	}
	f, err := os.Open(path)
	if err != nil {
		_ = syscall.Rmdir(path)
		return nil, fmt.Errorf("cgroup: open %s: %w", path, err)
	}
	return &Group{path: path, dir: f}, nil
}

// Path is the group's directory.
func (g *Group) Path() string { return g.path }

// Attr sets a's fields so that the process it starts begins in g.
func (g *Group) Attr(a *syscall.SysProcAttr) {
	a.UseCgroupFD, a.CgroupFD = true, int(g.dir.Fd())
}

// Procs are the pids in the group.
func (g *Group) Procs() []int {
	b, err := os.ReadFile(filepath.Join(g.path, "cgroup.procs"))
	if err != nil {
		return nil
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// populated reports whether a process is in the group or below it.
func (g *Group) populated() bool {
	b, err := os.ReadFile(filepath.Join(g.path, "cgroup.events"))
	if err != nil {
		return len(g.Procs()) > 0
	}
	return bytes.Contains(b, []byte("populated 1"))
}

// Kill ends every process in the group and waits (up to 10 s) until none
// is left.
func (g *Group) Kill() error {
	if !g.populated() {
		return nil
	}
	useKill := os.WriteFile(filepath.Join(g.path, "cgroup.kill"), []byte("1"), 0) == nil
	deadline := time.Now().Add(10 * time.Second)
	for wait := time.Millisecond; g.populated(); wait = min(wait*2, 50*time.Millisecond) {
		if time.Now().After(deadline) {
			return fmt.Errorf("cgroup %s: processes left after kill: %v", g.path, g.Procs())
		}
		if !useKill {
			for _, pid := range g.Procs() {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		time.Sleep(wait)
	}
	return nil
}

// Remove kills what is left in the group and removes it.
func (g *Group) Remove() error {
	err := g.Kill()
	if g.dir != nil {
		g.dir.Close()
		g.dir = nil
	}
	if rerr := syscall.Rmdir(g.path); rerr != nil && !errors.Is(rerr, syscall.ENOENT) && err == nil {
		err = fmt.Errorf("cgroup: remove %s: %w", g.path, rerr)
	}
	return err
}

// unifiedMount is where the cgroup v2 hierarchy is mounted.
func unifiedMount() (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", fmt.Errorf("cgroup: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent maj:min root mountpoint opts ... - fstype source superopts
		fields := strings.Fields(sc.Text())
		for i, fld := range fields {
			if fld == "-" && i+1 < len(fields) && fields[i+1] == "cgroup2" && len(fields) > 4 {
				return fields[4], nil
			}
		}
	}
	return "", errors.New("cgroup: no cgroup v2 hierarchy is mounted (pure or hybrid)")
}

// ownCgroup is this process's cgroup in the v2 hierarchy.
func ownCgroup() (string, error) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", fmt.Errorf("cgroup: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			return p, nil
		}
	}
	return "", errors.New("cgroup: this process has no cgroup v2 path")
}

// OwnsPort reports whether every socket listening on TCP port (any
// address, IPv4 or IPv6, of this network namespace) is held by a process
// of the group, and there is one: a colour's port answered by anything
// else, alone or beside it (SO_REUSEPORT), is a squatter's.
func (g *Group) OwnsPort(port int) (bool, error) {
	inodes := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			return false, err
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
			fl := strings.Fields(line)
			if len(fl) < 10 || fl[3] != "0A" { // 0A: LISTEN
				continue
			}
			_, hexPort, ok := strings.Cut(fl[1], ":")
			if p, err := strconv.ParseUint(hexPort, 16, 16); ok && err == nil && int(p) == port {
				inodes["socket:["+fl[9]+"]"] = true
			}
		}
	}
	if len(inodes) == 0 {
		return false, nil
	}
	held := map[string]bool{}
	for _, pid := range g.Procs() {
		dir := filepath.Join("/proc", strconv.Itoa(pid), "fd")
		ents, err := os.ReadDir(dir)
		if err != nil {
			continue // gone meanwhile
		}
		for _, e := range ents {
			if target, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && inodes[target] {
				held[target] = true
			}
		}
	}
	return len(held) == len(inodes), nil
}

// Usable says whether this process could contain commands: a cgroup v2
// hierarchy is mounted and its own cgroup there is writable to it (as
// root, or delegated by systemd's Delegate=yes).
func Usable() error {
	mount, err := unifiedMount()
	if err != nil {
		return err
	}
	own, err := ownCgroup()
	if err != nil {
		return err
	}
	dir := filepath.Join(mount, own)
	if err := syscall.Access(dir, 2 /* W_OK */); err != nil {
		return fmt.Errorf("cgroup: %s is not writable: %w", dir, err)
	}
	return nil
}
