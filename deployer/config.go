package deployer

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/eeveon/eeveon/deployer/names"
)

// Duration is a time.Duration written as a Go duration string ("90s", "1h")
// in TOML.
type Duration struct{ time.Duration }

// UnmarshalText parses a Go duration.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("invalid duration %q (use Go durations such as 90s or 1h)", string(b))
	}
	if v < 0 {
		return fmt.Errorf("invalid duration %q: must not be negative", string(b))
	}
	d.Duration = v
	return nil
}

// MarshalText renders the duration as a Go duration string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Config is the server configuration, <data>/eeveon.toml.
type Config struct {
	// Listen is the embedded SSH server's address; empty disables it
	// only when set explicitly to "off".
	Listen string `toml:"listen"`
	// PublicHost is how users reach this server in push URLs and
	// printed hints (host or host:port); defaults to Listen.
	PublicHost string `toml:"public_host"`
	// AdminGroup is the Unix group whose members act as admin on the
	// local CLI (root always does).
	AdminGroup string `toml:"admin_group"`
	// LogFile, when set, receives the server log (relative to the data
	// dir), rotated at LogMaxSize bytes; otherwise the log goes to stderr.
	LogFile    string       `toml:"log_file"`
	LogMaxSize int64        `toml:"log_max_size"`
	Vacuum     VacuumConfig `toml:"vacuum"`
	Deploy     DeployConfig `toml:"deploy"`
	// App holds the settings of app sites (start and proxy set).
	App AppConfig `toml:"app"`
	SSH SSHConfig `toml:"ssh"`
	// HTTP is the optional HTTP listener that serves one-click approval
	// links; off unless listen is set.
	HTTP HTTPConfig `toml:"http"`
	// Notify are the [[notify]] webhook blocks.
	Notify []NotifyConfig `toml:"notify"`
}

// HTTPConfig is the [http] section.
type HTTPConfig struct {
	// Listen is the HTTP server's address; empty disables it. A missing
	// host (":8080") means 127.0.0.1; write 0.0.0.0:8080 to listen on
	// every interface.
	Listen string `toml:"listen"`
	// PublicURL is the base URL put in approval links (scheme, host and
	// an optional path prefix); default http://<listen>.
	PublicURL string `toml:"public_url"`
	// GitHubSecret enables POST /hooks/github: a push webhook signed with
	// this secret makes the matching polled site poll at once.
	GitHubSecret string `toml:"github_secret"`
}

// NotifyConfig is one [[notify]] block: a webhook that receives deploy
// events.
type NotifyConfig struct {
	// Kind is the payload format: "webhook" (generic JSON, the default),
	// "slack" or "discord".
	Kind string `toml:"kind"`
	// URL receives the POST. It often is a secret (Slack and Discord put
	// the credential in it): it is never logged.
	URL string `toml:"url"`
	// Events filters which events are sent; empty sends all of them.
	Events []EventKind `toml:"events"`
	// Approver, when set and [http] listen is configured, adds a one-click
	// approval link to pending_approval notifications; an approval through
	// the link is recorded as this user.
	Approver string `toml:"approver"`
	// Timeout bounds one POST; Retries is how many more tries a failed
	// delivery gets (with backoff). Unset (or 0) means 5s and 3.
	Timeout Duration `toml:"timeout"`
	Retries int      `toml:"retries"`
}

// Notification kinds and their defaults.
const (
	NotifyWebhook = "webhook"
	NotifySlack   = "slack"
	NotifyDiscord = "discord"

	DefaultNotifyTimeout = 5 * time.Second
	DefaultNotifyRetries = 3
	maxNotifyRetries     = 10
)

// WithDefaults fills the settings a [[notify]] block left out: kind
// webhook, timeout 5s, 3 retries. A TOML array of tables cannot carry
// defaults from Default(), so LoadConfig applies this to every block.
func (n NotifyConfig) WithDefaults() NotifyConfig {
	if n.Kind == "" {
		n.Kind = NotifyWebhook
	}
	if n.Timeout.Duration == 0 {
		n.Timeout.Duration = DefaultNotifyTimeout
	}
	if n.Retries == 0 {
		n.Retries = DefaultNotifyRetries
	}
	return n
}

// VacuumConfig is the server's scheduled clean-up (see eeveon vacuum).
type VacuumConfig struct {
	Interval Duration `toml:"interval"` // 0 turns the schedule off
	Keep     int      `toml:"keep"`
	MaxAge   Duration `toml:"max_age"`
}

// DeployConfig holds pipeline limits.
type DeployConfig struct {
	// RunAs is the Unix user that build and health commands run as (the
	// server must run as root). Empty: the server's own user.
	RunAs           string   `toml:"run_as"`
	BuildTimeout    Duration `toml:"build_timeout"`
	HealthTimeout   Duration `toml:"health_timeout"`
	HealthInterval  Duration `toml:"health_interval"`
	HealthTry       Duration `toml:"health_try_timeout"`
	ShutdownTimeout Duration `toml:"shutdown_timeout"`
	// MaxPushSize bounds the pack a push over SSH may send, in bytes
	// (git's receive.maxInputSize); 0: no bound.
	MaxPushSize int64 `toml:"max_push_size"`
	// MaxLogSize bounds, in bytes, what the commands of one deploy may
	// write to its log and its client; past it their output is dropped
	// (the deploy goes on; the log says so).
	MaxLogSize int64 `toml:"max_log_size"`
}

// AppConfig is the [app] section: how app sites (a start command behind
// the built-in proxy) get their ports and are stopped.
type AppConfig struct {
	// PortMin and PortMax bound the ports given to app colours that do
	// not set ports themselves (two per site, remembered in
	// <data>/state/ports.json).
	PortMin int `toml:"port_min"`
	PortMax int `toml:"port_max"`
	// DrainTimeout bounds the wait for requests in flight on the old
	// colour after a switch; upgraded connections are closed then.
	DrainTimeout Duration `toml:"drain_timeout"`
	// StopGrace is the time between SIGTERM and SIGKILL when an app's
	// process group is stopped.
	StopGrace Duration `toml:"stop_grace"`
}

// SSHConfig holds the embedded SSH server's limits.
type SSHConfig struct {
	MaxSessions   int      `toml:"max_sessions"`
	IdleTimeout   Duration `toml:"idle_timeout"`
	MaxCommandLen int      `toml:"max_command_length"`
	AuthFailures  int      `toml:"auth_failures_per_minute"`
}

// DefaultListen is the embedded SSH server's default address.
const DefaultListen = "127.0.0.1:2222"

// Default returns the configuration with every default filled in. It is
// the one place defaults live; the file and then flags override it.
func Default() Config {
	return Config{
		Listen:     DefaultListen,
		AdminGroup: "eeveon-admin",
		LogMaxSize: 10 << 20,
		Vacuum: VacuumConfig{
			Interval: Duration{24 * time.Hour},
			Keep:     100,
			MaxAge:   Duration{30 * 24 * time.Hour},
		},
		Deploy: DeployConfig{
			BuildTimeout:    Duration{10 * time.Minute},
			HealthTimeout:   Duration{60 * time.Second},
			HealthInterval:  Duration{500 * time.Millisecond},
			HealthTry:       Duration{10 * time.Second},
			ShutdownTimeout: Duration{60 * time.Second},
			MaxPushSize:     256 << 20,
			MaxLogSize:      16 << 20,
		},
		App: AppConfig{
			PortMin:      20000,
			PortMax:      29999,
			DrainTimeout: Duration{30 * time.Second},
			StopGrace:    Duration{10 * time.Second},
		},
		SSH: SSHConfig{
			MaxSessions:   64,
			IdleTimeout:   Duration{10 * time.Minute},
			MaxCommandLen: 4096,
			AuthFailures:  20,
		},
	}
}

// decodeStrict decodes a TOML file into v and refuses keys it does not
// know, naming the key and the file.
func decodeStrict(path string, v any) error {
	md, err := toml.DecodeFile(path, v)
	if err != nil {
		var perr toml.ParseError
		if errors.As(err, &perr) {
			return fmt.Errorf("parse %s: line %d: %s", path, perr.Position.Line, perr.Message)
		}
		return fmt.Errorf("parse %s: %w", path, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return fmt.Errorf("parse %s: unknown key %s", path, strings.Join(keys, ", "))
	}
	return nil
}

// LoadConfig reads <data>/eeveon.toml over the defaults. A missing file
// yields the defaults.
func LoadConfig(d Data) (Config, error) {
	cfg := Default()
	if _, err := os.Stat(d.ConfigFile()); errors.Is(err, os.ErrNotExist) {
		return cfg, nil
	}
	if err := decodeStrict(d.ConfigFile(), &cfg); err != nil {
		return cfg, err
	}
	if cfg.LogFile != "" && !filepath.IsAbs(cfg.LogFile) {
		cfg.LogFile = filepath.Join(d.Dir, cfg.LogFile)
	}
	for i := range cfg.Notify {
		cfg.Notify[i] = cfg.Notify[i].WithDefaults()
	}
	return cfg, cfg.Validate()
}

// SSHHint is the host and port users reach the SSH server at, for the
// commands eeveon prints (public_host, else listen).
func (c Config) SSHHint() (host, port string) {
	addr := c.PublicHost
	if addr == "" {
		addr = c.Listen
	}
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return addr, "22"
	}
	return h, p
}

// Validate checks values that TOML types cannot.
func (c Config) Validate() error {
	if c.Deploy.BuildTimeout.Duration <= 0 || c.Deploy.HealthTimeout.Duration <= 0 ||
		c.Deploy.HealthInterval.Duration <= 0 || c.Deploy.HealthTry.Duration <= 0 {
		return errors.New("config: deploy timeouts and intervals must be positive")
	}
	if c.SSH.MaxSessions < 1 || c.SSH.MaxCommandLen < 16 || c.SSH.AuthFailures < 1 {
		return errors.New("config: ssh limits must be positive (max_command_length at least 16)")
	}
	if c.Vacuum.Keep < 1 || c.Vacuum.MaxAge.Duration <= 0 {
		return errors.New("config: [vacuum] keep must be at least 1 and max_age positive")
	}
	if c.App.PortMin < 1024 || c.App.PortMax > 65535 || c.App.PortMax-c.App.PortMin < 1 {
		return fmt.Errorf("config: [app] port_min..port_max (%d-%d) must hold at least two ports within 1024-65535", c.App.PortMin, c.App.PortMax)
	}
	if c.App.DrainTimeout.Duration <= 0 || c.App.StopGrace.Duration <= 0 {
		return errors.New("config: [app] drain_timeout and stop_grace must be positive")
	}
	if c.Deploy.MaxPushSize < 0 || c.Deploy.MaxLogSize < 1<<16 {
		return errors.New("config: [deploy] max_push_size must be 0 (no bound) or more, max_log_size at least 65536 bytes")
	}
	if c.LogMaxSize < 1<<16 {
		return errors.New("config: log_max_size must be at least 65536 bytes")
	}
	if err := c.HTTP.validate(); err != nil {
		return err
	}
	for i, n := range c.Notify {
		if err := n.validate(c.HTTP); err != nil {
			return fmt.Errorf("config: notify #%d: %w", i+1, err)
		}
	}
	return nil
}

func (h HTTPConfig) validate() error {
	if h.Listen == "" {
		if h.PublicURL != "" {
			return errors.New("config: http.public_url needs http.listen")
		}
		if h.GitHubSecret != "" {
			return errors.New("config: http.github_secret needs http.listen")
		}
		return nil
	}
	if h.GitHubSecret != "" && len(h.GitHubSecret) < 16 {
		return errors.New("config: http.github_secret must be at least 16 characters")
	}
	if _, port, err := net.SplitHostPort(h.Listen); err != nil || port == "" {
		return fmt.Errorf("config: http.listen %q is not host:port", h.Listen)
	}
	if h.PublicURL != "" {
		u, err := url.Parse(h.PublicURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
			u.User != nil || u.RawQuery != "" || u.Fragment != "" {
			return fmt.Errorf("config: http.public_url %q must be an http(s) URL without user, query or fragment", h.PublicURL)
		}
	}
	return nil
}

func (n NotifyConfig) validate(h HTTPConfig) error {
	switch n.Kind {
	case NotifyWebhook, NotifySlack, NotifyDiscord:
	default:
		return fmt.Errorf("kind %q is not webhook, slack or discord", n.Kind)
	}
	// The URL is not repeated in the message: it may hold a credential.
	u, err := url.Parse(n.URL)
	if n.URL == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("url must be an http or https URL")
	}
	for _, ev := range n.Events {
		if !slices.Contains(NotifyEvents, ev) {
			return fmt.Errorf("unknown event %q (events: %s)", ev, joinKinds(NotifyEvents))
		}
	}
	if n.Approver != "" {
		if err := names.User(n.Approver); err != nil {
			return fmt.Errorf("approver: %w", err)
		}
		if h.Listen == "" {
			return errors.New("approver needs [http] listen: approval links are served there")
		}
	}
	if n.Timeout.Duration <= 0 || n.Timeout.Duration > 5*time.Minute {
		return fmt.Errorf("timeout %s must be positive and at most 5m", n.Timeout.Duration)
	}
	if n.Retries < 0 || n.Retries > maxNotifyRetries {
		return fmt.Errorf("retries %d must be between 0 and %d", n.Retries, maxNotifyRetries)
	}
	return nil
}

// Data is the data directory and the names of everything in it.
type Data struct{ Dir string }

// NewData makes a Data with an absolute directory.
func NewData(dir string) (Data, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return Data{}, fmt.Errorf("resolve data dir %q: %w", dir, err)
	}
	return Data{Dir: abs}, nil
}

func (d Data) path(p ...string) string { return filepath.Join(append([]string{d.Dir}, p...)...) }

// ConfigFile is eeveon.toml.
func (d Data) ConfigFile() string { return d.path("eeveon.toml") }

// HostKey is the embedded server's private host key.
func (d Data) HostKey() string { return d.path("ssh_host_ed25519_key") }

// AuthorizedKeys is the role-tagged key store.
func (d Data) AuthorizedKeys() string { return d.path("authorized_keys") }

// SitesDir holds one NAME.toml per site.
func (d Data) SitesDir() string { return d.path("sites.d") }

// SiteFile is a site's definition.
func (d Data) SiteFile(name string) string { return d.path("sites.d", name+".toml") }

// DefaultSitePath is where a site's colours live unless --path says else.
func (d Data) DefaultSitePath(name string) string { return d.path("sites", name) }

// ReposDir holds the bare repositories.
func (d Data) ReposDir() string { return d.path("repos") }

// Repo is a site's bare repository.
func (d Data) Repo(name string) string { return d.path("repos", name+".git") }

// SitesRoot holds the default site paths.
func (d Data) SitesRoot() string { return d.path("sites") }

// DeploysRoot holds every site's deploy records.
func (d Data) DeploysRoot() string { return d.path("deploys") }

// DeploysDir holds a site's deploy records and logs.
func (d Data) DeploysDir(name string) string { return d.path("deploys", name) }

// Socket is the daemon's control socket.
func (d Data) Socket() string { return d.path("eeveon.sock") }

// AuditLog is the JSON Lines audit log.
func (d Data) AuditLog() string { return d.path("audit.log") }

// LockFile is held by the running daemon.
func (d Data) LockFile() string { return d.path("eeveon.lock") }

// ServerState is written by the running server: its pid and the
// addresses it really listens on.
func (d Data) ServerState() string { return d.path("state", "server.json") }

// PortsFile remembers the app ports picked for each app site.
func (d Data) PortsFile() string { return d.path("state", "ports.json") }

// AppStateFile records the live app process of an app site, so that a
// server that died can clean up after it.
func (d Data) AppStateFile(site string) string { return d.path("state", "apps", site+".json") }

// LogsDir holds the app logs.
func (d Data) LogsDir() string { return d.path("logs") }

// AppLog is the output of an app site's processes (rotated).
func (d Data) AppLog(site string) string { return d.path("logs", site+".app.log") }

// StateDir holds small per-site state files of the engine.
func (d Data) StateDir() string { return d.path("state") }

func joinKinds(kinds []EventKind) string {
	s := make([]string, len(kinds))
	for i, k := range kinds {
		s[i] = string(k)
	}
	return strings.Join(s, ", ")
}
