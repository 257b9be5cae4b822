package cgroup

import (
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"syscall"
)

// probe starts a process into g and checks that it is there.
func probe(g *Group) error {
	cmd := exec.Command("/bin/sh", "-c", "read x")
	cmd.SysProcAttr = &syscall.SysProcAttr{}
	g.Attr(cmd.SysProcAttr)
	in, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { in.Close(); _ = cmd.Wait() }()
	if !slices.Contains(g.Procs(), cmd.Process.Pid) {
		return fmt.Errorf("pid %s is not in %s", strconv.Itoa(cmd.Process.Pid), g.path)
	}
	return nil
}
