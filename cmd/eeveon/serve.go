package main

import (
	"bytes"
	"context"
	"fmt"
	"os"

	"github.com/charmbracelet/log"

	"github.com/eeveon/eeveon/cmd/eeveon/internal/daemon"
	"github.com/eeveon/eeveon/deployer"
)

func runServe(args []string) int {
	fs, data := flagSet("serve")
	listen := fs.String("listen", "", "SSH listen address (default: config listen, then "+deployer.DefaultListen+"; \"off\" disables SSH)")
	var opt logOptions
	fs.StringVar(&opt.format, "log-format", "text", "text, json or logfmt")
	fs.StringVar(&opt.level, "log-level", "info", "debug, info, warn or error")
	if _, code := parse(fs, args, 0, 0, "serve [--data DIR] [--listen ADDR] [--log-format text|json|logfmt] [--log-level LEVEL]"); code >= 0 {
		return code
	}
	d, err := deployer.NewData(*data)
	if err != nil {
		return fail(err)
	}
	if err := serve(d, *listen, opt); err != nil {
		return fail(err)
	}
	return 0
}

// logOptions are the server log's format and level flags.
type logOptions struct{ format, level string }

// serverLogger makes the server's logger: to stderr, or to the rotated
// log_file of the config.
func serverLogger(opt logOptions, cfg deployer.Config) (*log.Logger, func(), error) {
	o := log.Options{ReportTimestamp: true, Prefix: "serve"}
	switch opt.format {
	case "text":
		o.Formatter = log.TextFormatter
	case "json":
		o.Formatter = log.JSONFormatter
	case "logfmt":
		o.Formatter = log.LogfmtFormatter
	default:
		return nil, nil, fmt.Errorf("unknown log format %q (use text, json or logfmt)", opt.format)
	}
	lvl, err := log.ParseLevel(opt.level)
	if err != nil {
		return nil, nil, fmt.Errorf("unknown log level %q (use debug, info, warn or error)", opt.level)
	}
	o.Level = lvl
	if cfg.LogFile == "" {
		return log.NewWithOptions(os.Stderr, o), func() {}, nil
	}
	f := &deployer.RotatingFile{Path: cfg.LogFile, Max: cfg.LogMaxSize}
	return log.NewWithOptions(f, o), func() { f.Close() }, nil
}

// serve prepares the data dir (as eeveon init would), loads the config,
// switches the log to the config's log_file if set, and runs the daemon.
func serve(d deployer.Data, listenFlag string, opt logOptions) error {
	// Until the config is read, log to stderr in the chosen format.
	logger, _, err := serverLogger(opt, deployer.Default())
	if err != nil {
		return err
	}
	var initOut bytes.Buffer
	fp, err := initData(d, &initOut)
	if err != nil {
		return err
	}
	for _, line := range bytes.Split(bytes.TrimSpace(initOut.Bytes()), []byte("\n")) {
		if len(line) > 0 {
			logger.Info(string(line))
		}
	}
	cfg, err := deployer.LoadConfig(d)
	if err != nil {
		return err
	}
	if listenFlag != "" {
		cfg.Listen = listenFlag
	}
	if cfg.LogFile != "" {
		logger.Info("logging to " + cfg.LogFile)
		var closeLog func()
		if logger, closeLog, err = serverLogger(opt, cfg); err != nil {
			return err
		}
		defer closeLog()
	}
	dmn, err := daemon.New(daemon.Config{Data: d, Config: cfg, Log: logger, HostKey: fp, Exe: exe()})
	if err != nil {
		return err
	}
	return dmn.Run(context.Background())
}
