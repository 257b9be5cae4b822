package integration

import (
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// TestLocalCLIAdminGroup: on the box, a member of admin_group uses the
// local CLI as an admin, as himself; an account outside it cannot reach the
// socket at all. The README's set-up: data dir group-owned by the admin
// group, mode 0750.
func TestLocalCLIAdminGroup(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run the CLI as another user")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody")
	}
	group, err := user.LookupGroupId(nobody.Gid)
	if err != nil {
		t.Skip("nobody has no primary group")
	}
	t.Parallel()
	e := NewEnv(t)
	admin := e.AddKey("alice", "admin", "")
	e.MustEeveon("site", "add", "web")
	repo := e.NewRepo("web", map[string]string{"v": "1"})
	for i := 0; i < 2; i++ {
		repo.Commit("c", map[string]string{"v": strconv.Itoa(i)})
		if r := repo.Push(admin, "web"); r.Code != 0 {
			t.Fatal(r.Out())
		}
	}
	// The binary and the way to the data dir must be usable by nobody.
	binDir, err := os.MkdirTemp("", "eeveon-cli-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(binDir) })
	cli := filepath.Join(binDir, "eeveon")
	if b, err := os.ReadFile(bin); err != nil || os.WriteFile(cli, b, 0o755) != nil {
		t.Fatal("copy the binary")
	}
	for _, d := range []string{binDir, e.Dir, filepath.Dir(e.Dir)} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	gid, _ := strconv.Atoi(group.Gid)
	if err := os.Chown(e.Data, 0, gid); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(e.Data, 0o750); err != nil {
		t.Fatal(err)
	}
	asNobody := func(args ...string) Result {
		t.Helper()
		uid, _ := strconv.Atoi(nobody.Uid)
		cmd := exec.Command(cli, append(args, "--data", e.Data)...)
		cmd.Dir = binDir
		cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=/"}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
		var out, errb strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errb
		code := 0
		if err := cmd.Run(); err != nil {
			ee, ok := err.(*exec.ExitError)
			if !ok {
				t.Fatal(err)
			}
			code = ee.ExitCode()
		}
		return Result{out.String(), errb.String(), code}
	}

	e.restartWithConfig("admin_group = \"" + group.Name + "\"\n")
	if r := asNobody("whoami"); r.Code != 0 || !strings.Contains(r.Stdout, "user nobody, role admin") {
		t.Fatalf("a member of admin_group: exit %d\n%s", r.Code, r.Out())
	}
	if r := asNobody("rollback", "web"); r.Code != 0 || !strings.Contains(r.Stdout, "live: web") {
		t.Fatalf("admin verb as a member of admin_group: exit %d\n%s", r.Code, r.Out())
	}
	audit, _ := os.ReadFile(filepath.Join(e.Data, "audit.log"))
	if !strings.Contains(string(audit), `"user":"nobody","role":"admin"`) {
		t.Error("the local admin is not in the audit log as himself")
	}
	if r := e.Eeveon("check"); !strings.Contains(r.Stdout, "mode 0750, group "+group.Name) {
		t.Errorf("check does not accept the admin-group set-up:\n%s", r.Stdout)
	}

	// Outside the admin group: the socket is out of reach, said plainly.
	e.restartWithConfig("admin_group = \"no-such-group-eeveon\"\n")
	r := asNobody("rollback", "web")
	if r.Code == 0 || !strings.Contains(r.Stderr, "permission denied: this Unix account may not use the eeveon server's socket") {
		t.Fatalf("outside admin_group: exit %d\n%s", r.Code, r.Out())
	}
}
