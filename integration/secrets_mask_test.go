package integration

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// maskMinLine is the shortest line of a multi-line secret that must be
// masked on its own (README, "Secrets"); shorter lines are ordinary text.
const maskMinLine = 8

// secretForms are the strings that must never be seen in clear for the
// multi-line secret v: each of its lines of maskMinLine bytes or more, its
// base64 (of the value, and of the value and a newline as `echo | base64`
// encodes it), each line of that base64 as base64(1) wraps it at 76
// columns, and the JSON-escaped form (here also the dotenv-quoted one).
func secretForms(v string) []string {
	var forms []string
	addLines := func(s string) {
		for _, l := range strings.Split(s, "\n") {
			if l = strings.TrimSpace(l); len(l) >= maskMinLine {
				forms = append(forms, l)
			}
		}
	}
	addLines(v)
	for _, b := range []string{base64.StdEncoding.EncodeToString([]byte(v)), base64.StdEncoding.EncodeToString([]byte(v + "\n"))} {
		forms = append(forms, b)
		for len(b) > 76 {
			addLines(b[:76])
			b = b[76:]
		}
		addLines(b)
	}
	return append(forms, strings.ReplaceAll(v, "\n", `\n`))
}

// noSecretIn fails the test if text holds any of forms.
func noSecretIn(t *testing.T, what, text string, forms []string) {
	t.Helper()
	var found []string
	for i, f := range forms {
		if strings.Contains(text, f) {
			found = append(found, fmt.Sprintf("%d (%.12s…)", i, f))
		}
	}
	if len(found) > 0 {
		t.Errorf("%s holds forms %s of the secret:\n%s", what, strings.Join(found, ", "), text)
	}
}

// TestSecretsMultiLineMaskedInEveryShape: a PEM-style multi-line secret
// printed by a build, a failing health command and an app, plainly,
// indented, base64-encoded, JSON-escaped and dotenv-quoted, is masked line
// by line in the push output, the deploy log, the app log and the
// notifications, and no file under the test's directory (data dir, sites,
// records, history, audit log) nor the server log holds any of its forms.
func TestSecretsMultiLineMaskedInEveryShape(t *testing.T) {
	t.Parallel()
	appBin := testAppBinary(t)
	e := NewEnv(t)
	rcv := ntNewReceiver(t)
	e.restartWithConfig("[deploy]\nhealth_interval = \"50ms\"\nhealth_timeout = \"3s\"\nhealth_try_timeout = \"1s\"\n" +
		"[app]\ndrain_timeout = \"5s\"\nstop_grace = \"3s\"\n" +
		"[[notify]]\nurl = \"" + rcv.URL + "/generic\"\n")
	admin := e.AddKey("alice", "admin", "")
	pem := "-----BEGIN TEST PRIVATE KEY-----\n" +
		"MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7Vb4Yx2Kp3mQ9\n" +
		"Zr8fT1wLs0JdN6uHcE4aVgXyB2nPqR5tKmW9oLjD3sFhG7iUeA1bC0vYxZ8kNwQp\n" +
		"Hs5Jq2LmX7cVb9RkT4eWz1PaG6oYn3UdF8iKrM0tBvQxC2wEjS5lNhZ7gOpAu4Dy\n" +
		"q7Wc\n" + // below the minimum: not masked on its own
		"-----END TEST PRIVATE KEY-----"
	forms := secretForms(pem)
	dotenv := "PEM=\"" + strings.ReplaceAll(pem, "\n", `\n`) + "\"\n"

	// A static site whose build prints the secret in every shape and whose
	// health command prints it and fails.
	build := `#!/bin/sh
set -e
mkdir -p public
echo "plain: $PEM"
printf '%s\n' "$PEM" | sed 's/^/      indented: /'
echo "base64 wrapped:"
echo "$PEM" | base64
printf 'base64 one line: %s\n' "$(printf %s "$PEM" | base64 | tr -d '\n')"
printf 'json: {"key":"%s"}\n' "$(printf '%s\n' "$PEM" | awk 'BEGIN{ORS="\\n"}{print}')"
printf 'dotenv: %s\n' "$(grep '^PEM=' .env)"
echo ok > public/index.html
`
	e.MustEeveon("site", "add", "web", "--build", "./build.sh", "--secrets-file", ".env",
		"--health-cmd", `printf '%s\n' "$PEM" | sed 's/^/health> /'; echo "$PEM" | base64; exit 1`)
	if r := e.sshIn(admin, dotenv, "secrets", "encrypt", "web", "-"); r.Code != 0 {
		t.Fatalf("secrets encrypt web: exit %d\n%s", r.Code, r.Out())
	}
	web := e.NewRepo("web", map[string]string{"build.sh": build})
	push := web.Push(admin, "web")
	noSecretIn(t, "the push output", push.Out(), forms)
	for _, want := range []string{"    plain: ***", "      indented: ***", "base64 one line: ***", `json: {"key":"***`,
		`dotenv: PEM="***`, "    health> ***", "FAILED"} {
		if !strings.Contains(push.Stderr, want) {
			t.Errorf("the push output lacks %q:\n%s", want, push.Out())
		}
	}
	if strings.Contains(push.Stderr, "live: web") {
		t.Fatalf("the deploy with a failing health command went live:\n%s", push.Out())
	}
	logs := e.SSH(admin, "logs", "web")
	if logs.Code != 0 || !strings.Contains(logs.Stdout, "    plain: ***\n") {
		t.Errorf("ssh logs web: exit %d\n%s", logs.Code, logs.Out())
	}
	noSecretIn(t, "ssh logs web", logs.Out(), forms)

	// An app that prints the secret when it starts: the app log.
	proxy := "127.0.0.1:" + freePort(t)
	e.MustEeveon("site", "add", "api", "--proxy", proxy,
		"--start", `printf '%s\n' "$PEM" | sed 's/^/app> /'; echo "$PEM" | base64; exec `+appBin)
	if r := e.sshIn(admin, dotenv, "secrets", "encrypt", "api", "-"); r.Code != 0 {
		t.Fatalf("secrets encrypt api: exit %d\n%s", r.Code, r.Out())
	}
	api := e.NewRepo("api", map[string]string{"VERSION": "v1\n"})
	if r := api.Push(admin, "api"); r.Code != 0 || !strings.Contains(r.Stderr, "live: api") {
		t.Fatalf("push api: exit %d\n%s", r.Code, r.Out())
	} else {
		noSecretIn(t, "the app's push output", r.Out(), forms)
	}
	applog := e.SSH(admin, "logs", "api", "--app")
	if applog.Code != 0 || !strings.Contains(applog.Stdout, "| app> ***\n") {
		t.Errorf("ssh logs api --app: exit %d\n%s", applog.Code, applog.Out())
	}
	noSecretIn(t, "ssh logs api --app", applog.Out(), forms)

	// Notifications: every payload, as delivered.
	rcv.wait(t, "/generic", ntEvent("failed", "web"))
	rcv.wait(t, "/generic", ntEvent("live", "api"))
	rcv.mu.Lock()
	for _, p := range rcv.payloads {
		b, _ := json.Marshal(p.Doc)
		noSecretIn(t, "a notification", string(b)+fmt.Sprint(p.Doc), forms)
	}
	rcv.mu.Unlock()

	// Every file: deploy logs, app log, records, history, audit log, the
	// sites and their colours; and the server's own log.
	for _, f := range forms {
		scanFor(t, e.Dir, f)
	}
	noSecretIn(t, "the server log", e.ServerLog(), forms)
}
