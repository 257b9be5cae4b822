package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"

	"github.com/eeveon/eeveon/deployer/secrets"

	"github.com/eeveon/eeveon/cmd/eeveon/internal/daemon"
	"github.com/eeveon/eeveon/deployer"
	"github.com/eeveon/eeveon/deployer/check"
)

func runCheck(args []string) int {
	fs, data := flagSet("check")
	asJSON := fs.Bool("json", false, "print the results as JSON")
	if _, code := parse(fs, args, 0, 0, "check [--data DIR] [--json]"); code >= 0 {
		return code
	}
	d, err := deployer.NewData(*data)
	if err != nil {
		return fail(err)
	}
	running := false
	if c, err := net.Dial("unix", d.Socket()); err == nil {
		c.Close()
		running = true
	}
	ageKey, _ := secrets.IdentityPath(d.Dir)
	opt := check.Options{ServerRunning: running, AgeKeyFiles: []string{ageKey}}
	var st daemon.State
	if b, err := os.ReadFile(d.ServerState()); running && err == nil && json.Unmarshal(b, &st) == nil {
		opt.ServerAddrs = st.Addrs
	}
	results := check.Run(d, opt)
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(results); err != nil {
			return fail(err)
		}
	} else {
		for _, r := range results {
			fmt.Printf("%-4s  %-14s  %s\n", r.Status, r.Check, r.Message)
			if r.Fix != "" && r.Status != check.OK {
				fmt.Printf("      %-14s  fix: %s\n", "", r.Fix)
			}
		}
	}
	if check.Failed(results) {
		return 1
	}
	return 0
}
