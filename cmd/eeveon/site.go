package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/eeveon/eeveon/deployer/poll"

	"github.com/eeveon/eeveon/deployer/command"

	"github.com/eeveon/eeveon/deployer"
)

const siteUsage = "site add NAME [flags] | site set NAME [flags] | site list | site show NAME | site rm NAME"

func runSite(args []string) int {
	if len(args) == 0 {
		return usageFail("usage: eeveon %s", siteUsage)
	}
	switch args[0] {
	case "add":
		return siteAdd(args[1:])
	case "list", "ls":
		return siteList(args[1:])
	case "show":
		return siteShow(args[1:])
	case "set":
		return siteSet(args[1:])
	case "rm", "remove":
		return siteRm(args[1:])
	}
	return usageFail("unknown site command %q (usage: eeveon %s)", args[0], siteUsage)
}

// pushURL is the remote URL users add for a site.
func pushURL(d deployer.Data, site string) string {
	cfg, err := deployer.LoadConfig(d)
	if err != nil {
		cfg = deployer.Default()
	}
	host := cfg.PublicHost
	if host == "" {
		host = cfg.Listen
	}
	if h, p, err := net.SplitHostPort(host); err == nil {
		if p == "22" {
			host = h
		}
	}
	return "ssh://deploy@" + host + "/" + site
}

// siteFlags binds the site settings to fs, each defaulting to s's current
// value, so that add starts from the defaults and set from the site as is.
func siteFlags(fs *flag.FlagSet, s *deployer.Site) {
	fs.StringVar(&s.Branch, "branch", s.Branch, "branch that deploys")
	fs.StringVar(&s.Path, "path", s.Path, "site directory (default <data>/sites/NAME)")
	fs.StringVar(&s.Build, "build", s.Build, "build command (sh -c, in the new colour's directory)")
	fs.StringVar(&s.HealthCmd, "health-cmd", s.HealthCmd, "health check command (in the new colour's directory)")
	fs.StringVar(&s.HealthURL, "health-url", s.HealthURL, "health check URL ({color} and {path} are replaced)")
	fs.Func("strategy", "blue-green or in-place", func(v string) (err error) {
		s.Strategy, err = deployer.ParseStrategy(v)
		return err
	})
	fs.StringVar(&s.Start, "start", s.Start, "app command (sh -c, in the colour's directory, with PORT set); makes the site an app behind --proxy")
	fs.StringVar(&s.Proxy, "proxy", s.Proxy, "address the built-in proxy listens on for an app site, e.g. 127.0.0.1:8080")
	fs.Func("ports", "the app's two ports, blue's and green's: A,B (default: two from the [app] port range)", func(v string) error {
		ports, err := parsePorts(v)
		s.Ports = ports
		return err
	})
	fs.StringVar(&s.HealthPath, "health-path", s.HealthPath, "path the app must answer 2xx on before it gets traffic (default /up)")
	fs.StringVar(&s.OnSwap, "on-swap", s.OnSwap, "command run after each switch (EEVEON_COLOR, EEVEON_PATH, EEVEON_PORT set), e.g. to reload nginx")
	fs.StringVar(&s.SecretsFile, "secrets-file", s.SecretsFile, "path in the site (e.g. .env) where commands read the secrets as a dotenv file, kept in memory")
	fs.BoolVar(&s.Approval, "approval", s.Approval, "deploys wait for an admin's approval before going live")
	fs.DurationVar(&s.ApprovalTimeout.Duration, "approval-timeout", s.ApprovalTimeout.Duration, "how long a deploy waits for approval (default 1h)")
	fs.BoolVar(&s.RequireOtherApprover, "require-other-approver", s.RequireOtherApprover, "refuse an approval by the user who pushed")
	fs.StringVar(&s.Poll, "poll", s.Poll, "watch this remote URL and deploy when the branch moves")
	fs.DurationVar(&s.PollInterval.Duration, "interval", s.PollInterval.Duration, "poll interval (default 60s)")
	fs.StringVar(&s.PollSSHKey, "poll-ssh-key", s.PollSSHKey, "private key file for an ssh:// poll URL")
	fs.StringVar(&s.PollKnownHosts, "poll-known-hosts", s.PollKnownHosts, "known_hosts file for an ssh:// poll URL")
}

const siteFlagsUsage = "[--branch main] [--path DIR] [--build CMD] [--health-cmd CMD] [--health-url URL] [--strategy blue-green|in-place] [--start CMD --proxy ADDR [--ports A,B] [--health-path /up]] [--secrets-file .env] [--on-swap CMD] [--approval [--approval-timeout 1h] [--require-other-approver]] [--poll URL [--interval 60s]]"

// parsePorts reads --ports A,B; "" clears them.
func parsePorts(v string) ([]int, error) {
	if v == "" {
		return nil, nil
	}
	a, b, ok := strings.Cut(v, ",")
	pa, err1 := strconv.Atoi(strings.TrimSpace(a))
	pb, err2 := strconv.Atoi(strings.TrimSpace(b))
	if !ok || err1 != nil || err2 != nil {
		return nil, fmt.Errorf("want two ports A,B, got %q", v)
	}
	return []int{pa, pb}, nil
}

func siteAdd(args []string) int {
	fs, data := flagSet("site add")
	s := deployer.Site{Branch: "main", Strategy: deployer.BlueGreen}
	siteFlags(fs, &s)
	pos, code := parse(fs, args, 1, 1, "site add NAME "+siteFlagsUsage)
	if code >= 0 {
		return code
	}
	d, err := openData(*data)
	if err != nil {
		return fail(err)
	}
	s.Name = pos[0]
	s, err = saveSite(d, s, true)
	if err != nil {
		return fail(err)
	}
	if s.Poll != "" {
		fmt.Printf("added site %s: the server polls %s every %s and deploys branch %s when it moves\n", s.Name, s.Poll, s.PollInterval.Duration, s.Branch)
	} else {
		fmt.Printf("added site %s: push branch %s to %s\n", s.Name, s.Branch, pushURL(d, s.Name))
	}
	fmt.Printf("  strategy %s, path %s\n", s.Strategy, s.Path)
	if s.Approval {
		fmt.Printf("  deploys wait up to %s for an admin's approval\n", s.ApprovalTimeout.Duration)
	}
	if s.IsApp() {
		fmt.Printf("  app: %q behind the proxy on %s, health check GET %s\n", s.Start, s.Proxy, s.HealthPath)
	}
	return 0
}

// siteSet changes the given settings of an existing site.
func siteSet(args []string) int {
	use := "site set NAME " + siteFlagsUsage
	fs, data := flagSet("site set")
	var scratch deployer.Site
	siteFlags(fs, &scratch)
	d, s, code := siteArg(fs, data, args, use)
	if code >= 0 {
		return code
	}
	// Parse again, now onto the site as it is: only the flags given change it.
	fs2, _ := flagSet("site set")
	siteFlags(fs2, &s)
	if _, err := command.ParseFlags(fs2, args); err != nil {
		return usageFail("site set: %v", err)
	}
	if !s.Approval {
		s.ApprovalTimeout.Duration, s.RequireOtherApprover = 0, false
	}
	if s.Poll == "" {
		s.PollInterval.Duration, s.PollSSHKey, s.PollKnownHosts = 0, "", ""
	}
	if s.Start == "" && s.Proxy == "" {
		s.Ports, s.HealthPath = nil, ""
	}
	s, err := saveSite(d, s, false)
	if err != nil {
		return fail(err)
	}
	fmt.Printf("updated site %s\n", s.Name)
	return 0
}

func siteList(args []string) int {
	fs, data := flagSet("site list")
	if _, code := parse(fs, args, 0, 0, "site list"); code >= 0 {
		return code
	}
	d, err := openData(*data)
	if err != nil {
		return fail(err)
	}
	sites, errs := deployer.ListSites(d)
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NAME\tBRANCH\tSTRATEGY\tLIVE\tPATH")
	for _, s := range sites {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", s.Name, s.Branch, s.Strategy, firstNonEmpty(deployer.LiveColor(s.Path), "-"), s.Path)
	}
	w.Flush()
	for _, err := range errs {
		fmt.Fprintf(os.Stderr, "warning: %v\n", err)
	}
	if len(errs) > 0 {
		return 1
	}
	return 0
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// siteArg parses "NAME" plus the flags of fs and loads that site.
func siteArg(fs *flag.FlagSet, data *string, args []string, use string) (deployer.Data, deployer.Site, int) {
	pos, code := parse(fs, args, 1, 1, use)
	if code >= 0 {
		return deployer.Data{}, deployer.Site{}, code
	}
	d, err := openData(*data)
	if err != nil {
		return d, deployer.Site{}, fail(err)
	}
	s, err := deployer.LoadSite(d, pos[0])
	if err != nil {
		return d, s, fail(err)
	}
	return d, s, -1
}

func siteShow(args []string) int {
	fs, data := flagSet("site show")
	d, s, code := siteArg(fs, data, args, "site show NAME")
	if code >= 0 {
		return code
	}
	fmt.Printf("name:       %s\nbranch:     %s\nstrategy:   %s\npath:       %s\nbuild:      %s\nhealth cmd: %s\nhealth url: %s\nrepository: %s\npush URL:   %s\nlive:       %s\n",
		s.Name, s.Branch, s.Strategy, s.Path, firstNonEmpty(s.Build, "-"), firstNonEmpty(s.HealthCmd, "-"),
		firstNonEmpty(s.HealthURL, "-"), d.Repo(s.Name), pushURL(d, s.Name), firstNonEmpty(deployer.LiveColor(s.Path), "-"))
	if s.Poll != "" {
		fmt.Printf("poll:       %s every %s\n", s.Poll, s.PollInterval.Duration)
	}
	if s.IsApp() {
		ports := "from the [app] port range"
		if len(s.Ports) == 2 {
			ports = fmt.Sprintf("blue %d, green %d", s.Ports[0], s.Ports[1])
		}
		fmt.Printf("app:        %s\nproxy:      %s\nports:      %s\nhealth:     GET %s\n", s.Start, s.Proxy, ports, s.HealthPath)
	}
	if s.Approval {
		fmt.Printf("approval:   required, expires after %s%s\n", s.ApprovalTimeout.Duration, map[bool]string{true: ", by another admin than the pusher"}[s.RequireOtherApprover])
	}
	return 0
}

func siteRm(args []string) int {
	fs, data := flagSet("site rm")
	d, s, code := siteArg(fs, data, args, "site rm NAME")
	if code >= 0 {
		return code
	}
	if err := deployer.RemoveSite(d, s.Name); err != nil {
		return fail(err)
	}
	fmt.Printf("removed site %s; its files stay on disk: %s (site), %s (repository), %s (deploy logs)\n",
		s.Name, s.Path, d.Repo(s.Name), d.DeploysDir(s.Name))
	return 0
}

// saveSite checks what a site file alone cannot (its poll credentials,
// addresses other app sites use) and writes the site.
func saveSite(d deployer.Data, s deployer.Site, create bool) (deployer.Site, error) {
	if err := s.Validate(d); err != nil {
		return s, err
	}
	if err := poll.CheckSite(s); err != nil {
		return s, err
	}
	if err := noClash(d, s); err != nil {
		return s, err
	}
	return deployer.SaveSite(d, s, create, exe())
}

// noClash refuses a site whose proxy address or fixed ports another app
// site already uses.
func noClash(d deployer.Data, s deployer.Site) error {
	sites, _ := deployer.ListSites(d)
	all := []deployer.Site{s}
	for _, o := range sites {
		if o.Name != s.Name {
			all = append(all, o)
		}
	}
	if clashes := deployer.AddrClashes(all); len(clashes) > 0 {
		return fmt.Errorf("%s (give this site another --proxy or --ports)", clashes[0])
	}
	return nil
}
