package deployer

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/eeveon/eeveon/deployer/names"
)

// ErrSiteNotFound is returned for a site that does not exist (or that the
// caller may not see: the two are reported alike).
var ErrSiteNotFound = errors.New("no such site")

// ErrSiteExists is returned when adding a site whose name is taken.
var ErrSiteExists = errors.New("site already exists")

// Strategy is how a deploy reaches the live directory.
type Strategy string

// The strategies.
const (
	BlueGreen Strategy = "blue-green"
	InPlace   Strategy = "in-place"
)

// ParseStrategy accepts "blue-green" or "in-place".
func ParseStrategy(s string) (Strategy, error) {
	switch Strategy(s) {
	case BlueGreen, InPlace:
		return Strategy(s), nil
	}
	return "", fmt.Errorf("unknown strategy %q (use blue-green or in-place)", s)
}

// Site is one deployable site, stored as <data>/sites.d/NAME.toml.
type Site struct {
	Name      string   `toml:"name"`
	Branch    string   `toml:"branch"`
	Path      string   `toml:"path"`
	Build     string   `toml:"build,omitempty"`
	HealthCmd string   `toml:"health_cmd,omitempty"`
	HealthURL string   `toml:"health_url,omitempty"`
	Strategy  Strategy `toml:"strategy"`

	// OnSwap is a command run (sh -c, in the site path, as the server's
	// user) after each switch of the live colour, with EEVEON_COLOR,
	// EEVEON_PATH and EEVEON_PORT set: for a web server in front.
	OnSwap string `toml:"on_swap,omitempty"`

	// Start, when set, makes the site an app: after the build the command
	// is run (sh -c, in the colour's directory, PORT set to the colour's
	// port) and kept running; the built-in proxy on Proxy sends traffic
	// to the live colour. Start and Proxy go together.
	Start string `toml:"start,omitempty"`
	Proxy string `toml:"proxy,omitempty"`
	// Ports are the blue and green app ports; empty: two from the
	// server's [app] port range, remembered.
	Ports []int `toml:"ports,omitempty"`
	// HealthPath is what the app must answer 2xx on before it gets
	// traffic (default /up).
	HealthPath string `toml:"health_path,omitempty"`

	// SecretsFile, when set, is a path in the colour dir (e.g. ".env")
	// where the build and health commands can read the site's secrets as
	// a dotenv file. It is a symlink to /dev/fd/3, a sealed in-memory
	// file: nothing is written to disk.
	SecretsFile string `toml:"secrets_file,omitempty"`

	// Approval makes a deploy stop in pending_approval after its health
	// check until an admin approves it, for ApprovalTimeout (default 1h).
	Approval        bool     `toml:"approval,omitempty"`
	ApprovalTimeout Duration `toml:"approval_timeout,omitempty"`
	// RequireOtherApprover refuses an approval by the user who pushed.
	RequireOtherApprover bool `toml:"require_other_approver,omitempty"`

	// Poll, when set, is a remote URL (anything git understands) that the
	// server watches instead of waiting for pushes.
	Poll         string   `toml:"poll,omitempty"`
	PollInterval Duration `toml:"poll_interval,omitempty"`
	// PollSSHKey and PollKnownHosts authenticate an ssh:// remote: a
	// deploy key (private key file) and the known_hosts file to check the
	// remote's host key against.
	PollSSHKey     string `toml:"poll_ssh_key,omitempty"`
	PollKnownHosts string `toml:"poll_known_hosts,omitempty"`
}

// DefaultApprovalTimeout is how long a deploy waits for approval.
const DefaultApprovalTimeout = time.Hour

// DefaultPollInterval is how often a polled site's remote is checked.
const DefaultPollInterval = 60 * time.Second

// Validate checks a site definition and fills defaults that depend on
// the data dir. Relative paths are resolved against the data dir here, once.
func (s *Site) Validate(d Data) error {
	if err := names.Site(s.Name); err != nil {
		return err
	}
	if s.Branch == "" {
		s.Branch = "main"
	}
	if err := names.Ref(s.Branch); err != nil {
		return fmt.Errorf("site %s: branch: %w", s.Name, err)
	}
	s.Branch = strings.TrimPrefix(s.Branch, "refs/heads/")
	if s.Path == "" {
		s.Path = d.DefaultSitePath(s.Name)
	}
	if !filepath.IsAbs(s.Path) {
		s.Path = filepath.Join(d.Dir, s.Path)
	}
	s.Path = filepath.Clean(s.Path)
	if s.Path == "/" {
		return fmt.Errorf("site %s: path must not be /", s.Name)
	}
	if s.Strategy == "" {
		s.Strategy = BlueGreen
	}
	if _, err := ParseStrategy(string(s.Strategy)); err != nil {
		return fmt.Errorf("site %s: %w", s.Name, err)
	}
	if err := s.validateApp(); err != nil {
		return fmt.Errorf("site %s: %w", s.Name, err)
	}
	if s.SecretsFile != "" {
		c := filepath.Clean(s.SecretsFile)
		if filepath.IsAbs(c) || c == "." || strings.HasPrefix(c, "..") || strings.HasPrefix(c, ".git") {
			return fmt.Errorf("site %s: secrets_file %q must be a relative path inside the site (e.g. .env)", s.Name, s.SecretsFile)
		}
		s.SecretsFile = c
	}
	if s.Approval && s.ApprovalTimeout.Duration == 0 {
		s.ApprovalTimeout.Duration = DefaultApprovalTimeout
	}
	if !s.Approval && (s.ApprovalTimeout.Duration != 0 || s.RequireOtherApprover) {
		return fmt.Errorf("site %s: approval_timeout and require_other_approver need approval = true", s.Name)
	}
	if s.Poll == "" && (s.PollSSHKey != "" || s.PollKnownHosts != "" || s.PollInterval.Duration != 0) {
		return fmt.Errorf("site %s: poll_interval, poll_ssh_key and poll_known_hosts need poll (a remote URL)", s.Name)
	}
	if s.Poll != "" {
		if strings.HasPrefix(s.Poll, "-") || strings.ContainsAny(s.Poll, "\x00\n\r") {
			return fmt.Errorf("site %s: poll URL %q is not a git remote URL", s.Name, s.Poll)
		}
		if s.PollInterval.Duration == 0 {
			s.PollInterval.Duration = DefaultPollInterval
		}
		if s.PollInterval.Duration < time.Second {
			return fmt.Errorf("site %s: poll interval %s is below the minimum of 1s", s.Name, s.PollInterval.Duration)
		}
		for _, p := range []*string{&s.PollSSHKey, &s.PollKnownHosts} {
			if *p != "" && !filepath.IsAbs(*p) {
				*p = filepath.Join(d.Dir, *p)
			}
		}
	}
	if s.HealthURL != "" {
		u, err := url.Parse(strings.NewReplacer("{color}", "blue", "{path}", "x").Replace(s.HealthURL))
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("site %s: health URL %q must be an http:// or https:// URL", s.Name, s.HealthURL)
		}
	}
	return nil
}

// DefaultHealthPath is what an app answers its health check on.
const DefaultHealthPath = "/up"

// IsApp reports whether the site runs an app behind the built-in proxy.
func (s Site) IsApp() bool { return s.Start != "" }

func (s *Site) validateApp() error {
	if s.Start == "" && s.Proxy == "" {
		if len(s.Ports) > 0 || s.HealthPath != "" {
			return errors.New("ports and health_path need start and proxy (an app site)")
		}
		return nil
	}
	if s.Start == "" || s.Proxy == "" {
		return errors.New("start and proxy go together: an app site needs both (--start CMD --proxy ADDR)")
	}
	if strings.ContainsAny(s.Start, "\x00") {
		return errors.New("start command must not contain NUL")
	}
	if s.Strategy != BlueGreen {
		return errors.New("an app site must use the blue-green strategy: two colours run side by side")
	}
	_, port, err := net.SplitHostPort(s.Proxy)
	if err != nil || port == "" || port == "0" {
		return fmt.Errorf("proxy %q must be host:port, e.g. 127.0.0.1:8080", s.Proxy)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("proxy %q: bad port", s.Proxy)
	}
	switch len(s.Ports) {
	case 0:
	case 2:
		for _, p := range s.Ports {
			if p < 1 || p > 65535 {
				return fmt.Errorf("ports %v: each must be in 1-65535", s.Ports)
			}
		}
		if s.Ports[0] == s.Ports[1] {
			return fmt.Errorf("ports %v: the two colours need two different ports", s.Ports)
		}
		if port == strconv.Itoa(s.Ports[0]) || port == strconv.Itoa(s.Ports[1]) {
			return fmt.Errorf("ports %v: the proxy listens on one of them", s.Ports)
		}
	default:
		return fmt.Errorf("ports %v: give two ports, blue's and green's", s.Ports)
	}
	if s.HealthPath == "" {
		s.HealthPath = DefaultHealthPath
	}
	if !strings.HasPrefix(s.HealthPath, "/") || strings.ContainsAny(s.HealthPath, " \t\r\n#") {
		return fmt.Errorf("health_path %q must be a URL path starting with /", s.HealthPath)
	}
	return nil
}

// Ref is the full ref of the site's deploy branch.
func (s Site) Ref() string { return "refs/heads/" + s.Branch }

// LoadSite reads one site definition.
func LoadSite(d Data, name string) (Site, error) {
	if err := names.Site(name); err != nil {
		return Site{}, err
	}
	path := d.SiteFile(name)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return Site{}, fmt.Errorf("%w: %s", ErrSiteNotFound, name)
	}
	var s Site
	if err := decodeStrict(path, &s); err != nil {
		return Site{}, err
	}
	if s.Name != name {
		return Site{}, fmt.Errorf("%s: name %q does not match the file name", path, s.Name)
	}
	if err := s.Validate(d); err != nil {
		return Site{}, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// ListSites reads every site definition, sorted by name. A broken file is
// reported in errs and skipped, so one bad site does not hide the others.
func ListSites(d Data) (sites []Site, errs []error) {
	ents, err := os.ReadDir(d.SitesDir())
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, []error{fmt.Errorf("list sites: %w", err)}
	}
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".toml")
		if !ok || e.IsDir() || strings.HasPrefix(name, ".") {
			continue
		}
		s, err := LoadSite(d, name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		sites = append(sites, s)
	}
	sort.Slice(sites, func(i, j int) bool { return sites[i].Name < sites[j].Name })
	return sites, errs
}

// SaveSite validates and writes a site definition atomically, creating
// its bare repository (with the deploy hook) if needed. With create set
// an existing site is an error.
func SaveSite(d Data, s Site, create bool, hookExe string) (Site, error) {
	if err := s.Validate(d); err != nil {
		return s, err
	}
	if create {
		if _, err := os.Stat(d.SiteFile(s.Name)); err == nil {
			return s, fmt.Errorf("%w: %s", ErrSiteExists, s.Name)
		}
	}
	if err := os.MkdirAll(d.SitesDir(), 0o700); err != nil {
		return s, fmt.Errorf("save site %s: %w", s.Name, err)
	}
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "# Site %s, written by eeveon. Edit with care: unknown keys are refused.\n", s.Name)
	if err := toml.NewEncoder(&buf).Encode(s); err != nil {
		return s, fmt.Errorf("save site %s: %w", s.Name, err)
	}
	if err := PrepareRepo(d, s, hookExe); err != nil {
		return s, err
	}
	if err := WriteFileAtomic(d.SiteFile(s.Name), buf.Bytes(), 0o600); err != nil {
		return s, err
	}
	return s, nil
}

// RemoveSite deletes a site's definition. Its repository, deploy records
// and site directory are left on disk (the live files keep being served
// by whatever serves them); the caller says so.
func RemoveSite(d Data, name string) error {
	if err := names.Site(name); err != nil {
		return err
	}
	if err := os.Remove(d.SiteFile(name)); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%w: %s", ErrSiteNotFound, name)
		}
		return fmt.Errorf("remove site %s: %w", name, err)
	}
	// State that belongs to the site's configuration goes with it, so a
	// new site of the same name starts afresh (a poller that remembers
	// "deployed" would skip its first commit).
	for _, f := range []string{name + ".poll.json", name + ".in-place.index", name + ".blue.index", name + ".green.index"} {
		_ = os.Remove(filepath.Join(d.StateDir(), f))
	}
	return SyncDir(d.SitesDir())
}

// AddrClashes lists, one line each, app sites that would use the same
// address: one proxy address, or one fixed app port, for two sites.
func AddrClashes(sites []Site) []string {
	owner := map[string]string{}
	var out []string
	claim := func(addr, site string) {
		if other, ok := owner[addr]; ok && other != site {
			out = append(out, fmt.Sprintf("sites %s and %s both use %s", other, site, addr))
			return
		}
		owner[addr] = site
	}
	for _, s := range sites {
		if !s.IsApp() {
			continue
		}
		claim(s.Proxy, s.Name)
		for _, p := range s.Ports {
			claim(fmt.Sprintf("127.0.0.1:%d", p), s.Name)
		}
	}
	return out
}
