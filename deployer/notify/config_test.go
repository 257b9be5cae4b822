package notify

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/eeveon/eeveon/deployer"
)

// The [http] and [[notify]] settings as deployer.LoadConfig reads them:
// defaults filled per block, and every mistake refused with its reason.
func TestNotifyConfig(t *testing.T) {
	tests := []struct {
		name, toml, err string
	}{
		{"defaults", `[[notify]]
url = "https://hooks.example.com/x"`, ""},
		{"full", `[http]
listen = "127.0.0.1:8080"
public_url = "https://deploy.example.com/eeveon/"
[[notify]]
kind = "slack"
url = "https://hooks.slack.com/services/T/B/X"
events = ["live", "failed", "pending_approval", "superseded"]
approver = "alice"
timeout = "2s"
retries = 5`, ""},
		{"two blocks", `[[notify]]
kind = "discord"
url = "https://discord.com/api/webhooks/1/x"
[[notify]]
url = "http://127.0.0.1:9/hook"`, ""},
		{"unknown key", `[[notify]]
url = "https://x.test"
secret = "x"`, "unknown key notify.secret"},
		{"unknown http key", `[http]
port = 80`, "unknown key http.port"},
		{"bad kind", `[[notify]]
kind = "teams"
url = "https://x.test"`, `kind "teams" is not webhook, slack or discord`},
		{"no url", `[[notify]]
kind = "slack"`, "url must be an http or https URL"},
		{"bad url scheme", `[[notify]]
url = "file:///etc/passwd"`, "url must be an http or https URL"},
		{"bad event", `[[notify]]
url = "https://x.test"
events = ["live", "deployed"]`, `unknown event "deployed"`},
		{"approver without http", `[[notify]]
url = "https://x.test"
approver = "alice"`, "approver needs [http] listen"},
		{"bad approver", `[http]
listen = "127.0.0.1:8080"
[[notify]]
url = "https://x.test"
approver = "-alice"`, "approver: invalid name"},
		{"negative retries", `[[notify]]
url = "https://x.test"
retries = -1`, "retries -1 must be between 0 and 10"},
		{"too many retries", `[[notify]]
url = "https://x.test"
retries = 11`, "retries 11"},
		{"huge timeout", `[[notify]]
url = "https://x.test"
timeout = "1h"`, "timeout 1h0m0s must be positive and at most 5m"},
		{"bad listen", `[http]
listen = "8080"`, `http.listen "8080" is not host:port`},
		{"public url without listen", `[http]
public_url = "https://x.test"`, "http.public_url needs http.listen"},
		{"public url with query", `[http]
listen = ":8080"
public_url = "https://x.test/?a=b"`, "must be an http(s) URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := deployer.NewData(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(d.ConfigFile(), []byte(tt.toml+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg, err := deployer.LoadConfig(d)
			if tt.err == "" {
				if err != nil {
					t.Fatalf("LoadConfig: %v", err)
				}
				for _, n := range cfg.Notify {
					if n.Kind == "" || n.Timeout.Duration <= 0 || n.Retries <= 0 {
						t.Errorf("defaults not filled: %+v", n)
					}
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("LoadConfig error = %v, want one containing %q", err, tt.err)
			}
		})
	}
}

func TestNotifyDefaults(t *testing.T) {
	n := deployer.NotifyConfig{URL: "https://x.test"}.WithDefaults()
	if n.Kind != deployer.NotifyWebhook || n.Timeout.Duration != 5*time.Second || n.Retries != 3 {
		t.Errorf("WithDefaults = %+v, want webhook, 5s, 3 retries", n)
	}
	if len(deployer.Default().Notify) != 0 || deployer.Default().HTTP.Listen != "" {
		t.Error("notifications or the HTTP listener are on by default")
	}
}
