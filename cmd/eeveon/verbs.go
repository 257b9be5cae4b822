package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/charmbracelet/log"

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
	rt := &command.Router{Engine: deployer.NewEngine(d, cfg, logger), Log: logger}
	fmt.Fprintln(os.Stderr, "eeveon: the server is not running; answering from the files")
	id := control.LocalIdentity(uint32(os.Getuid()), uint32(os.Getgid()), cfg.AdminGroup)
	return rt.Run(context.Background(), id, args, command.IO{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr})
}

func runHook(args []string) int {
	if len(args) == 0 || args[0] != "post-receive" {
		return usageFail("usage: eeveon hook post-receive [--data DIR] (git runs this in a site's repository)")
	}
	fs, data := flagSet("hook post-receive")
	if _, code := parse(fs, args[1:], 0, 0, "hook post-receive [--data DIR]"); code >= 0 {
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
	return hooks.PostReceive(d, gitDir, os.Stdin, os.Stdout, os.Stderr)
}
