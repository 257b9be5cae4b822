package httpapi

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/eeveon/eeveon/deployer"
	"github.com/eeveon/eeveon/deployer/command"
)

// githubPush is the part of GitHub's push event eeveon reads.
type githubPush struct {
	Ref        string `json:"ref"`
	Repository struct {
		CloneURL string `json:"clone_url"`
		SSHURL   string `json:"ssh_url"`
		GitURL   string `json:"git_url"`
		HTMLURL  string `json:"html_url"`
	} `json:"repository"`
}

// deliveries remembers recent delivery ids, so a redelivered webhook
// triggers nothing twice.
type deliveries struct {
	mu    sync.Mutex
	seen  map[string]bool
	order []string
}

func (d *deliveries) first(id string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.seen == nil {
		d.seen = map[string]bool{}
	}
	if d.seen[id] {
		return false
	}
	d.seen[id] = true
	d.order = append(d.order, id)
	if len(d.order) > 1000 {
		delete(d.seen, d.order[0])
		d.order = d.order[1:]
	}
	return true
}

// github handles POST /hooks/github: a push event, signed with the
// configured secret (X-Hub-Signature-256, compared in constant time),
// makes every polled site whose remote and branch it names poll now. The
// poll then deploys exactly the commit it finds on the remote; nothing of
// the payload but the repository URL and the ref is trusted.
func (s *Server) github(w http.ResponseWriter, r *http.Request) {
	if s.Config.GitHubSecret == "" || s.Trigger == nil {
		http.Error(w, "webhooks are off: set http.github_secret", http.StatusForbidden)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, "cannot read the body", http.StatusBadRequest)
		return
	}
	sig, ok := strings.CutPrefix(r.Header.Get("X-Hub-Signature-256"), "sha256=")
	want := hmac.New(sha256.New, []byte(s.Config.GitHubSecret))
	want.Write(body)
	got, err := hex.DecodeString(sig)
	if !ok || err != nil || !hmac.Equal(got, want.Sum(nil)) {
		s.auditHook(r, "", "denied: bad signature")
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	switch r.Header.Get("X-GitHub-Event") {
	case "ping":
		fmt.Fprintln(w, "pong")
		return
	case "push":
	default:
		fmt.Fprintln(w, "ignored: only push events trigger a poll")
		return
	}
	if id := r.Header.Get("X-GitHub-Delivery"); id != "" && !s.seen.first(id) {
		fmt.Fprintln(w, "ignored: this delivery was already handled")
		return
	}
	var ev githubPush
	if err := json.Unmarshal(body, &ev); err != nil {
		http.Error(w, "bad push event", http.StatusBadRequest)
		return
	}
	urls := map[string]bool{}
	for _, u := range []string{ev.Repository.CloneURL, ev.Repository.SSHURL, ev.Repository.GitURL, ev.Repository.HTMLURL} {
		if u != "" {
			urls[normalizeRemote(u)] = true
		}
	}
	sites, _ := deployer.ListSites(s.data)
	var hit []string
	for _, site := range sites {
		if site.Poll != "" && urls[normalizeRemote(site.Poll)] && ev.Ref == site.Ref() {
			s.Trigger(site.Name)
			hit = append(hit, site.Name)
		}
	}
	w.WriteHeader(http.StatusAccepted)
	if len(hit) == 0 {
		fmt.Fprintln(w, "no site polls this repository and branch")
		return
	}
	for _, name := range hit {
		s.auditHook(r, name, "poll triggered")
	}
	fmt.Fprintf(w, "polling now: %s\n", strings.Join(hit, ", "))
}

// normalizeRemote makes remote URLs comparable: no scheme credentials,
// no trailing .git or slash, lower-case host part.
func normalizeRemote(u string) string {
	u = strings.TrimSuffix(strings.TrimSuffix(strings.TrimSpace(u), "/"), ".git")
	if i := strings.Index(u, "://"); i >= 0 {
		rest := u[i+3:]
		if at := strings.LastIndex(rest, "@"); at >= 0 && at < strings.Index(rest+"/", "/") {
			rest = rest[at+1:]
		}
		u = u[:i+3] + rest
	}
	return strings.ToLower(u)
}

func (s *Server) auditHook(r *http.Request, site, outcome string) {
	if s.Audit == nil {
		return
	}
	_ = s.Audit.Log(command.Event{User: "github", Role: "webhook", Remote: r.RemoteAddr, Source: "http",
		Command: "POST /hooks/github", Site: site, Outcome: outcome})
}
