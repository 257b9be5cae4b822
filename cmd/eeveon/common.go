package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/charmbracelet/log"

	"github.com/eeveon/eeveon/deployer"
	"github.com/eeveon/eeveon/deployer/command"
)

// defaultDataDir is $EEVEON_DATA, then ./eeveon-data.
func defaultDataDir() string {
	if d := os.Getenv("EEVEON_DATA"); d != "" {
		return d
	}
	return "eeveon-data"
}

// fail prints one line to stderr and returns exit status 1.
func fail(err error) int {
	fmt.Fprintf(os.Stderr, "eeveon: %v\n", err)
	return 1
}

// usageFail prints a usage error and returns exit status 2.
func usageFail(format string, args ...any) int {
	fmt.Fprintf(os.Stderr, "eeveon: "+format+"\n", args...)
	return 2
}

// flagSet makes a flag set with the common --data flag.
func flagSet(name string) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	data := fs.String("data", defaultDataDir(), "data directory")
	return fs, data
}

// parse parses flags anywhere among the arguments and checks the number
// of positional arguments.
func parse(fs *flag.FlagSet, args []string, min, max int, use string) ([]string, int) {
	pos, err := command.ParseFlags(fs, args)
	if err != nil {
		return nil, usageFail("%s: %v (usage: eeveon %s)", fs.Name(), err, use)
	}
	if len(pos) < min || len(pos) > max {
		return nil, usageFail("usage: eeveon %s", use)
	}
	return pos, -1
}

// openData resolves the data dir; it must have been initialised.
func openData(dir string) (deployer.Data, error) {
	d, err := deployer.NewData(dir)
	if err != nil {
		return d, err
	}
	if _, err := os.Stat(d.Dir); errors.Is(err, os.ErrNotExist) {
		return d, fmt.Errorf("data dir %s does not exist (create it with: eeveon init --data %s)", d.Dir, dir)
	}
	return d, nil
}

// exe is the absolute path of this binary, for hooks and forced commands.
func exe() string {
	p, err := os.Executable()
	if err != nil {
		return "eeveon"
	}
	return p
}

// splitDataFlag removes --data DIR / --data=DIR from args, wherever it is.
func splitDataFlag(args []string) (string, []string, error) {
	data := defaultDataDir()
	var rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return data, append(rest, args[i:]...), nil
		case a == "--data" || a == "-data":
			if i+1 >= len(args) {
				return "", nil, errors.New("flag needs an argument: --data")
			}
			data = args[i+1]
			i++
		case strings.HasPrefix(a, "--data=") || strings.HasPrefix(a, "-data="):
			data = a[strings.IndexByte(a, '=')+1:]
		default:
			rest = append(rest, a)
		}
	}
	return data, rest, nil
}

func newLogger(prefix string) *log.Logger {
	return log.NewWithOptions(os.Stderr, log.Options{ReportTimestamp: true, Prefix: prefix})
}
