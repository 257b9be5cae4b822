package deployer

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/eeveon/eeveon/deployer/names"
)

func newData(t *testing.T) Data {
	t.Helper()
	d, err := NewData(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestDefault(t *testing.T) {
	c := Default()
	if c.Listen != "127.0.0.1:2222" || c.AdminGroup != "eeveon-admin" || c.PublicHost != "" {
		t.Errorf("Default() listen/admin/public = %q/%q/%q", c.Listen, c.AdminGroup, c.PublicHost)
	}
	durations := []struct {
		name      string
		got, want time.Duration
	}{
		{"build_timeout", c.Deploy.BuildTimeout.Duration, 10 * time.Minute},
		{"health_timeout", c.Deploy.HealthTimeout.Duration, time.Minute},
		{"health_interval", c.Deploy.HealthInterval.Duration, 500 * time.Millisecond},
		{"health_try_timeout", c.Deploy.HealthTry.Duration, 10 * time.Second},
		{"shutdown_timeout", c.Deploy.ShutdownTimeout.Duration, time.Minute},
		{"ssh.idle_timeout", c.SSH.IdleTimeout.Duration, 10 * time.Minute},
	}
	for _, d := range durations {
		if d.got != d.want {
			t.Errorf("Default() %s = %s, want %s", d.name, d.got, d.want)
		}
	}
	if c.SSH.MaxSessions != 64 || c.SSH.MaxCommandLen != 4096 || c.SSH.AuthFailures != 20 {
		t.Errorf("Default() ssh = %+v", c.SSH)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Default().Validate() = %v", err)
	}
}

func TestLoadConfigMissingFileGivesDefaults(t *testing.T) {
	d := newData(t)
	c, err := LoadConfig(d)
	if err != nil {
		t.Fatalf("LoadConfig without a file: %v", err)
	}
	if !reflect.DeepEqual(c, Default()) {
		t.Errorf("LoadConfig without a file = %+v, want Default()", c)
	}
}

func TestLoadConfigOverrides(t *testing.T) {
	d := newData(t)
	writeFile(t, d.ConfigFile(), `
listen = "0.0.0.0:22"
public_host = "deploy.example.com"

[deploy]
build_timeout = "90s"

[ssh]
max_sessions = 8
`)
	c, err := LoadConfig(d)
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "0.0.0.0:22" || c.PublicHost != "deploy.example.com" {
		t.Errorf("listen/public_host = %q/%q", c.Listen, c.PublicHost)
	}
	if c.Deploy.BuildTimeout.Duration != 90*time.Second || c.SSH.MaxSessions != 8 {
		t.Errorf("build_timeout = %s, max_sessions = %d", c.Deploy.BuildTimeout, c.SSH.MaxSessions)
	}
	// Keys the file does not mention keep their defaults.
	if c.AdminGroup != "eeveon-admin" || c.Deploy.HealthTimeout.Duration != time.Minute || c.SSH.MaxCommandLen != 4096 {
		t.Errorf("unset keys lost their defaults: %+v", c)
	}
}

func TestLoadConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		file string
		want []string // all must appear in the error
	}{
		{"unknown top-level key", "listen = \"x:1\"\nlisten_port = 22\n", []string{"unknown key", "listen_port"}},
		{"unknown nested key", "[deploy]\nbuild_timout = \"1m\"\n", []string{"unknown key", "deploy.build_timout"}},
		{"unknown table", "[web]\nport = 1\n", []string{"unknown key", "web"}},
		{"bad duration", "[deploy]\nbuild_timeout = \"ten minutes\"\n", []string{"ten minutes", "duration"}},
		{"duration without unit", "[deploy]\nhealth_timeout = \"60\"\n", []string{`"60"`, "duration"}},
		{"negative duration", "[deploy]\nhealth_timeout = \"-1s\"\n", []string{"-1s", "negative"}},
		{"zero duration", "[deploy]\nhealth_interval = \"0s\"\n", []string{"positive"}},
		{"wrong type", "[ssh]\nmax_sessions = \"many\"\n", []string{"max_sessions"}},
		{"syntax error", "listen = \n", []string{"line 1"}},
		{"command length too small", "[ssh]\nmax_command_length = 8\n", []string{"max_command_length"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := newData(t)
			writeFile(t, d.ConfigFile(), tc.file)
			_, err := LoadConfig(d)
			if err == nil {
				t.Fatalf("LoadConfig accepted %q", tc.file)
			}
			msg := err.Error()
			t.Logf("error: %s", msg)
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not mention %q", msg, w)
				}
			}
			if strings.Contains(tc.name, "unknown") || strings.Contains(tc.name, "duration") && !strings.Contains(tc.name, "zero") {
				if !strings.Contains(msg, d.ConfigFile()) {
					t.Errorf("error %q does not name the file %s", msg, d.ConfigFile())
				}
			}
		})
	}
}

func TestDurationText(t *testing.T) {
	var d Duration
	if err := d.UnmarshalText([]byte("1h30m")); err != nil || d.Duration != 90*time.Minute {
		t.Fatalf("UnmarshalText(1h30m) = %v, %s", err, d)
	}
	b, err := d.MarshalText()
	if err != nil || string(b) != "1h30m0s" {
		t.Errorf("MarshalText = %q, %v", b, err)
	}
	var back Duration
	if err := back.UnmarshalText(b); err != nil || back != d {
		t.Errorf("round trip %q = %s, %v", b, back, err)
	}
}

func TestSiteFileUnknownKey(t *testing.T) {
	d := newData(t)
	writeFile(t, d.SiteFile("x"), "name = \"x\"\nbranch = \"main\"\nbuild_cmd = \"make\"\n")
	_, err := LoadSite(d, "x")
	if err == nil {
		t.Fatal("LoadSite accepted a site file with an unknown key")
	}
	if msg := err.Error(); !strings.Contains(msg, "build_cmd") || !strings.Contains(msg, d.SiteFile("x")) {
		t.Errorf("error %q does not name the key build_cmd and the file %s", msg, d.SiteFile("x"))
	}
}

func TestSiteFileOtherErrors(t *testing.T) {
	tests := []struct {
		name, file, want string
	}{
		{"name mismatch", "name = \"y\"\n", "does not match"},
		{"bad strategy", "name = \"x\"\nstrategy = \"rolling\"\n", "rolling"},
		{"bad branch", "name = \"x\"\nbranch = \"-x\"\n", "branch"},
		{"syntax", "name = x\n", "line 1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := newData(t)
			writeFile(t, d.SiteFile("x"), tc.file)
			_, err := LoadSite(d, "x")
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), d.SiteFile("x")) {
				t.Errorf("LoadSite = %v, want an error naming %q and the file", err, tc.want)
			}
		})
	}
}

func TestSiteValidate(t *testing.T) {
	d := newData(t)

	s := Site{Name: "hello"}
	if err := s.Validate(d); err != nil {
		t.Fatal(err)
	}
	if s.Branch != "main" || s.Path != filepath.Join(d.Dir, "sites", "hello") || s.Strategy != BlueGreen {
		t.Errorf("defaults: branch %q path %q strategy %q", s.Branch, s.Path, s.Strategy)
	}
	if s.Ref() != "refs/heads/main" {
		t.Errorf("Ref() = %q", s.Ref())
	}

	s = Site{Name: "hello", Branch: "refs/heads/prod", Path: "www/hello/../hello2", Strategy: InPlace}
	if err := s.Validate(d); err != nil {
		t.Fatal(err)
	}
	if s.Branch != "prod" || s.Ref() != "refs/heads/prod" {
		t.Errorf("branch %q ref %q, want prod", s.Branch, s.Ref())
	}
	if want := filepath.Join(d.Dir, "www", "hello2"); s.Path != want {
		t.Errorf("relative path resolved to %q, want %q", s.Path, want)
	}
	if s.Strategy != InPlace {
		t.Errorf("strategy %q, want in-place", s.Strategy)
	}

	abs := filepath.Join(t.TempDir(), "srv")
	s = Site{Name: "hello", Path: abs + "/"}
	if err := s.Validate(d); err != nil || s.Path != abs {
		t.Errorf("absolute path: %q, %v; want %q", s.Path, err, abs)
	}

	s = Site{Name: "hello", HealthURL: "http://127.0.0.1:8080/{color}/health"}
	if err := s.Validate(d); err != nil {
		t.Errorf("health URL with {color}: %v", err)
	}

	bad := []struct {
		site Site
		want string
	}{
		{Site{Name: "Hello"}, "site name"},
		{Site{Name: ""}, "site name"},
		{Site{Name: "x", Path: "/"}, "must not be /"},
		{Site{Name: "x", Path: "//"}, "must not be /"},
		{Site{Name: "x", Path: "/srv/.."}, "must not be /"},
		{Site{Name: "x", Branch: "a..b"}, "branch"},
		{Site{Name: "x", Branch: "--all"}, "branch"},
		{Site{Name: "x", Strategy: "canary"}, "canary"},
		{Site{Name: "x", HealthURL: "ftp://example.com/"}, "health URL"},
		{Site{Name: "x", HealthURL: "localhost:8080/health"}, "health URL"},
		{Site{Name: "x", HealthURL: "http://"}, "health URL"},
		{Site{Name: "x", HealthURL: "/health"}, "health URL"},
		{Site{Name: "x", HealthURL: "file:///etc/passwd"}, "health URL"},
	}
	for _, tc := range bad {
		s := tc.site
		err := s.Validate(d)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%+v) = %v, want an error mentioning %q", tc.site, err, tc.want)
		}
	}
	s = Site{Name: "Bad"}
	if err := s.Validate(d); !errors.Is(err, names.ErrInvalid) {
		t.Errorf("Validate of a bad name = %v, want names.ErrInvalid", err)
	}
}

func TestParseStrategy(t *testing.T) {
	for _, s := range []string{"blue-green", "in-place"} {
		if got, err := ParseStrategy(s); err != nil || string(got) != s {
			t.Errorf("ParseStrategy(%q) = %q, %v", s, got, err)
		}
	}
	for _, s := range []string{"", "bluegreen", "Blue-Green", "in_place"} {
		if _, err := ParseStrategy(s); err == nil {
			t.Errorf("ParseStrategy(%q) accepted", s)
		}
	}
}

func TestNewDataIsAbsolute(t *testing.T) {
	d, err := NewData("relative/dir")
	if err != nil {
		t.Fatal(err)
	}
	if !filepath.IsAbs(d.Dir) {
		t.Errorf("NewData(relative) = %q, not absolute", d.Dir)
	}
	if d.Repo("hello") != filepath.Join(d.Dir, "repos", "hello.git") || d.SiteFile("hello") != filepath.Join(d.Dir, "sites.d", "hello.toml") {
		t.Errorf("paths: %s %s", d.Repo("hello"), d.SiteFile("hello"))
	}
}
