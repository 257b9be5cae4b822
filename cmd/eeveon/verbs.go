package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/eeveon/eeveon/keys"

	"github.com/charmbracelet/log"

	"github.com/eeveon/eeveon/cmd/eeveon/internal/daemon"
	"github.com/eeveon/eeveon/deployer"
	"github.com/eeveon/eeveon/deployer/command"
	"github.com/eeveon/eeveon/deployer/control"
	"github.com/eeveon/eeveon/hooks"
)

// readOnly verbs can be answered from the files when no server runs.
var readOnly = map[string]bool{"status": true, "history": true, "logs": true, "sites": true, "whoami": true}

// runVerb sends an operations verb to the running server through the
// control socket; the server decides what this Unix user may do.
func runVerb(verb string) func(args []string) int {
	return func(args []string) int {
		data, rest, err := splitDataFlag(args)
		if err != nil {
			return usageFail("%v", err)
		}
		d, err := openData(data)
		if err != nil {
			return fail(err)
		}
		req := control.Request{Args: append([]string{verb}, rest...)}
		code, err := control.Call(d.Socket(), req, os.Stdout, os.Stderr)
		if errors.Is(err, control.ErrNoServer) && readOnly[verb] {
			return offline(d, req.Args)
		}
		if err != nil {
			return fail(err)
		}
		return code
	}
}

// offline answers a read-only verb from the files, through the same
// router, for the local Unix user.
func offline(d deployer.Data, args []string) int {
	cfg, err := deployer.LoadConfig(d)
	if err != nil {
		return fail(err)
	}
	logger := log.NewWithOptions(os.Stderr, log.Options{Level: log.ErrorLevel})
	rt := &command.Router{Engine: command.Offline(d, cfg), Log: logger}
	fmt.Fprintln(os.Stderr, "eeveon: the server is not running; answering from the files")
	id := control.LocalIdentity(uint32(os.Getuid()), uint32(os.Getgid()), cfg.AdminGroup)
	return rt.Run(context.Background(), id, args, command.IO{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr})
}

func runHook(args []string) int {
	const usage = "usage: eeveon hook proc-receive [--data DIR] (git runs this in a site's repository)"
	if len(args) == 0 {
		return usageFail(usage)
	}
	if args[0] == "post-receive" {
		// The hook of an older eeveon, which deployed after the branch had
		// moved: the push is stored, the repository needs the new hooks.
		fmt.Fprintln(os.Stderr, "eeveon: this repository's hooks are from an older eeveon: the push is stored but not deployed; run eeveon hooks install (or restart eeveon serve), then eeveon deploy SITE")
		return 1
	}
	if args[0] != "proc-receive" {
		return usageFail(usage)
	}
	fs, data := flagSet("hook proc-receive")
	if _, code := parse(fs, args[1:], 0, 0, "hook proc-receive [--data DIR]"); code >= 0 {
		return code
	}
	d, err := deployer.NewData(*data)
	if err != nil {
		return fail(err)
	}
	gitDir := os.Getenv("GIT_DIR")
	if gitDir == "" {
		gitDir = "."
	}
	return hooks.ProcReceive(d, gitDir, os.Stdin, os.Stdout, os.Stderr)
}

// runShellCmd is `eeveon shell`, the forced command of an OpenSSH
// authorized_keys line written by `eeveon keys add --openssh`.
func runShellCmd(args []string) int {
	data, rest, err := splitDataFlag(args)
	if err != nil {
		return usageFail("%v", err)
	}
	// The same reading of the key's identity as the embedded server's.
	user, role, sites, err := keys.IdentityArgs(rest)
	if err != nil {
		return usageFail("shell: %v (usage: eeveon shell --user NAME --role ROLE [--sites a,b], an OpenSSH forced command)", err)
	}
	d, err := openData(data)
	if err != nil {
		return fail(err)
	}
	id := keys.Identity{User: user, Role: role, Sites: sites, Remote: hooks.RemoteFromEnv(), Source: "openssh"}
	return hooks.Shell(context.Background(), d, id, os.Getenv("SSH_ORIGINAL_COMMAND"), os.Stdin, os.Stdout, os.Stderr)
}

// runHooks is `eeveon hooks install [SITE]`: (re)write the post-receive
// hook of one site's bare repository, or of all, keeping a hook of the
// user's own as post-receive.local.
func runHooks(args []string) int {
	if len(args) == 0 || args[0] != "install" {
		return usageFail("usage: eeveon hooks install [SITE]")
	}
	fs, data := flagSet("hooks install")
	pos, code := parse(fs, args[1:], 0, 1, "hooks install [SITE]")
	if code >= 0 {
		return code
	}
	d, err := openData(*data)
	if err != nil {
		return fail(err)
	}
	var sites []deployer.Site
	if len(pos) == 1 {
		s, err := deployer.LoadSite(d, pos[0])
		if err != nil {
			return fail(err)
		}
		sites = []deployer.Site{s}
	} else {
		var errs []error
		sites, errs = deployer.ListSites(d)
		for _, err := range errs {
			fmt.Fprintf(os.Stderr, "warning: %v\n", err)
		}
	}
	for _, s := range sites {
		if err := deployer.PrepareRepo(d, s, exe()); err != nil {
			return fail(err)
		}
		fmt.Printf("installed post-receive hook in %s\n", d.Repo(s.Name))
	}
	return 0
}

// runVacuum is `eeveon vacuum`: through the daemon when it runs (it holds
// the site locks), otherwise in this process under the data dir's lock,
// so that no server starts meanwhile.
func runVacuum(args []string) int {
	data, rest, err := splitDataFlag(args)
	if err != nil {
		return usageFail("%v", err)
	}
	d, err := openData(data)
	if err != nil {
		return fail(err)
	}
	req := control.Request{Args: append([]string{"vacuum"}, rest...)}
	code, err := control.Call(d.Socket(), req, os.Stdout, os.Stderr)
	if !errors.Is(err, control.ErrNoServer) {
		if err != nil {
			return fail(err)
		}
		return code
	}
	unlock, err := daemon.Lock(d)
	if errors.Is(err, daemon.ErrRunning) {
		return fail(errors.New("the server holds the data dir but does not answer on its socket; try again"))
	} else if err != nil {
		return fail(err)
	}
	defer unlock()
	cfg, err := deployer.LoadConfig(d)
	if err != nil {
		return fail(err)
	}
	logger := log.NewWithOptions(os.Stderr, log.Options{Level: log.ErrorLevel})
	rt := &command.Router{Engine: deployer.NewEngine(d, cfg, logger), Log: logger, Audit: command.NewAudit(d.AuditLog())}
	id := control.LocalIdentity(uint32(os.Getuid()), uint32(os.Getgid()), cfg.AdminGroup)
	return rt.Run(context.Background(), id, req.Args, command.IO{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr})
}
