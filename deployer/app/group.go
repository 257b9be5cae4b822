package app

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// procStat is what this package needs from /proc/PID/stat.
type procStat struct {
	state byte
	pgrp  int
}

func readStat(pid int) (procStat, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, false
	}
	// pid (comm) state ppid pgrp ...; comm may hold spaces and parens.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 3 || len(f[0]) != 1 {
		return procStat{}, false
	}
	pgrp, err := strconv.Atoi(f[2])
	if err != nil {
		return procStat{}, false
	}
	return procStat{state: f[0][0], pgrp: pgrp}, true
}

// GroupMembers lists the live (not zombie) processes in process group
// pgid, from /proc.
func GroupMembers(pgid int) []int {
	if pgid <= 0 {
		return nil
	}
	if err := syscall.Kill(-pgid, 0); errors.Is(err, syscall.ESRCH) {
		return nil // no process at all, zombies included
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, ok := readStat(pid); ok && st.pgrp == pgid && st.state != 'Z' && st.state != 'X' {
			pids = append(pids, pid)
		}
	}
	return pids
}

// waitGroupGone waits up to d for group pgid to have no live member.
// Zombies do not count: their reaper may be slow (or, as PID 1 of some
// containers, never come).
func waitGroupGone(pgid int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		if len(GroupMembers(pgid)) == 0 {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Alive reports whether pid is still an app supervisor started by this
// package (by Start, possibly in an earlier life of the server) and
// leads process group pgid. A pid that was reused by another program
// is not alive in this sense, nor is a zombie.
func Alive(pid, pgid int) bool {
	if pid <= 1 || pgid <= 1 {
		return false
	}
	st, ok := readStat(pid)
	if !ok || st.pgrp != pgid || st.state == 'Z' || st.state == 'X' {
		return false
	}
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return false
	}
	// /bin/sh -c SCRIPT eeveon-app COMMAND GRACE
	args := strings.Split(string(cmdline), "\x00")
	return len(args) > 3 && args[3] == marker
}

// ErrGroupSurvived is returned by KillGroup when members of the group are
// still alive after SIGKILL.
var ErrGroupSurvived = errors.New("process group survived SIGKILL")

// KillGroup stops process group pgid: SIGTERM to the group, up to grace
// for its members to exit, then SIGKILL. It returns nil once no live
// member is left, also when there was none to begin with. Use it on a
// group that Alive vouched for, or one whose leader is gone: it kills
// whatever is in the group.
func KillGroup(pgid int, grace time.Duration) error {
	if pgid <= 1 || pgid == syscall.Getpgrp() {
		return fmt.Errorf("kill process group %d: refusing", pgid)
	}
	if len(GroupMembers(pgid)) == 0 {
		return nil
	}
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	if waitGroupGone(pgid, grace) {
		return nil
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	if waitGroupGone(pgid, 2*time.Second) {
		return nil
	}
	return fmt.Errorf("kill process group %d: %w (members %v)", pgid, ErrGroupSurvived, GroupMembers(pgid))
}
