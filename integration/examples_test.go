package integration

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/fcgi"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/eeveon/eeveon/deployer"
	"github.com/eeveon/eeveon/deployer/secrets"
)

// The examples in ../examples, exercised as an operator would use them:
// pushed through the real SSH server, served by a real nginx and Caddy,
// and the systemd unit's command line run with its restrictions emulated.

const examplesDir = "../examples"

// exampleFiles reads an example directory into the path -> content map
// that NewRepo and Commit take (build output such as bin/ is left out).
func exampleFiles(t *testing.T, name string) map[string]string {
	t.Helper()
	root := filepath.Join(examplesDir, name)
	files := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if d.IsDir() {
			if rel == "bin" {
				return filepath.SkipDir
			}
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		files[rel] = string(b)
		return nil
	})
	if err != nil {
		t.Fatalf("read example %s: %v", name, err)
	}
	return files
}

// exReadExample reads one example file.
func exReadExample(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(examplesDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// exReplace replaces old with new in s and fails the test unless old
// occurs exactly n times: when an example changes shape, the test's
// template step says so instead of testing something else.
func exReplace(t *testing.T, file, s, old, new string, n int) string {
	t.Helper()
	if got := strings.Count(s, old); got != n {
		t.Fatalf("%s: %q occurs %d times, the test expects %d: update the test's template step", file, old, got, n)
	}
	return strings.ReplaceAll(s, old, new)
}

// exGet fetches url with the Host header host and returns the status and
// body.
func exGet(t *testing.T, url, host string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s (Host %s): %v", url, host, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, string(b)
}

// exWaitTCP waits until addr accepts connections or exited closes.
func exWaitTCP(t *testing.T, addr string, exited <-chan struct{}, out fmt.Stringer) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return
		}
		select {
		case <-exited:
			t.Fatalf("exited before listening on %s:\n%s", addr, out)
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("nothing listens on %s:\n%s", addr, out)
}

// exProc is a background process of a test, in its own process group.
type exProc struct {
	cmd    *exec.Cmd
	out    *hdOutput
	exited chan struct{}
	err    error
}

// exStart starts cmd in the background; the test's end kills its whole
// process group if it still runs.
func exStart(t *testing.T, cmd *exec.Cmd) *exProc {
	t.Helper()
	p := &exProc{cmd: cmd, out: &hdOutput{}, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", cmd.Path, err)
	}
	go func() { p.err = cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-p.exited
		if t.Failed() {
			t.Logf("%s printed:\n%s", filepath.Base(cmd.Path), p.out)
		}
	})
	return p
}

// stop sends sig to the process alone and waits up to limit for its exit.
func (p *exProc) stop(t *testing.T, sig syscall.Signal, limit time.Duration) error {
	t.Helper()
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.exited:
		return p.err
	case <-time.After(limit):
		t.Fatalf("%s did not stop within %s of %v:\n%s", filepath.Base(p.cmd.Path), limit, sig, p.out)
		return nil
	}
}

func TestExampleHelloDeploys(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	admin := e.AddKey("alice", "admin", "")
	// As examples/dev/run.sh registers it for `make run`.
	e.MustEeveon("site", "add", "hello", "--build", "./build.sh", "--health-cmd", "./health.sh")
	repo := e.NewRepo("hello", exampleFiles(t, "hello"))
	c1 := repo.Git("rev-parse", "HEAD")
	r := repo.Push(admin, "hello")
	if r.Code != 0 || !strings.Contains(r.Stderr, "live: hello "+c1[:7]+" on blue") {
		t.Fatalf("push of examples/hello: exit %d\n%s", r.Code, r.Out())
	}
	if !strings.Contains(r.Stderr, "rendered public/index.html for hello at "+c1) {
		t.Errorf("build output missing:\n%s", r.Stderr)
	}
	page := e.ReadSite("hello", "public/index.html")
	if !strings.Contains(page, "Commit "+c1+", served from the blue colour.") {
		t.Errorf("live page does not name commit %s and blue:\n%s", c1, page)
	}
	if strings.Contains(page, "@COMMIT@") || strings.Contains(page, "@COLOR@") {
		t.Errorf("live page has unrendered placeholders:\n%s", page)
	}
}

func TestExampleAppDeploysAndServes(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("examples/app builds with go, which is not on PATH")
	}
	t.Parallel()
	e := NewEnv(t)
	// A failing health check is given 2s, not the default minute.
	e.restartWithConfig("[deploy]\nhealth_timeout = \"2s\"\n")
	admin := e.AddKey("alice", "admin", "")
	e.MustEeveon("site", "add", "app", "--build", "./build.sh", "--health-cmd", "./health.sh")
	files := exampleFiles(t, "app")
	repo := e.NewRepo("app", files)
	c1 := repo.Git("rev-parse", "HEAD")
	r := repo.Push(admin, "app")
	if r.Code != 0 || !strings.Contains(r.Stderr, "live: app "+c1[:7]+" on blue") {
		t.Fatalf("push of examples/app: exit %d\n%s", r.Code, r.Out())
	}
	for _, want := range []string{"built bin/app at " + c1, "health check passed"} {
		if !strings.Contains(r.Stderr, want) {
			t.Errorf("push output lacks %q:\n%s", want, r.Stderr)
		}
	}

	// The health check is not a formality: a commit whose /up fails does
	// not go live, and blue keeps serving c1.
	broken := exReplace(t, "examples/app/main.go", files["main.go"],
		`fmt.Fprintln(w, "ok")`, `http.Error(w, "down", http.StatusServiceUnavailable)`, 1)
	c2 := repo.Commit("break /up", map[string]string{"main.go": broken})
	r = repo.Push(admin, "app")
	if strings.Contains(r.Stderr, "live: app "+c2[:7]) || !strings.Contains(r.Stderr, "/up: 503 Service Unavailable") ||
		!strings.Contains(r.Stderr, "app stays on blue ("+c1[:7]+")") {
		t.Errorf("a commit whose /up answers 503 was not stopped by health.sh:\n%s", r.Stderr)
	}
	if got := e.Live("app"); got != "blue" {
		t.Fatalf("after a failed health check current -> %q, want blue", got)
	}

	// Run the live binary as a service manager would: PORT from the
	// environment, the working directory the site's current.
	current := filepath.Join(e.SitePath("app"), "current")
	port := freePort(t)
	cmd := exec.Command(filepath.Join(current, "bin", "app"))
	cmd.Dir = current
	cmd.Env = append(os.Environ(), "PORT="+port, "HOST=")
	app := exStart(t, cmd)
	addr := "127.0.0.1:" + port
	exWaitTCP(t, addr, app.exited, app.out)
	if !strings.Contains(app.out.String(), "listening on 127.0.0.1:"+port) {
		t.Errorf("app did not say where it listens:\n%s", app.out)
	}
	if code, body := exGet(t, "http://"+addr+"/", ""); code != 200 || body != "eeveon example app\ncommit "+c1+"\n" {
		t.Errorf("GET / = %d %q, want 200 and commit %s", code, body, c1)
	}
	if code, body := exGet(t, "http://"+addr+"/up", ""); code != 200 || body != "ok\n" {
		t.Errorf("GET /up = %d %q, want 200 ok", code, body)
	}
	if code, _ := exGet(t, "http://"+addr+"/nope", ""); code != 404 {
		t.Errorf("GET /nope = %d, want 404", code)
	}
	if err := app.stop(t, syscall.SIGTERM, 5*time.Second); err != nil {
		t.Errorf("app on SIGTERM: %v\n%s", err, app.out)
	}
}

// webSites is what the nginx and Caddy tests serve: the example hello
// (static) and a PHP site blog, each deployed under <tmp>/srv/www as the
// examples' comments say, and a FastCGI server standing in for PHP-FPM
// that answers with the paths it was handed.
type webSites struct {
	e         *Env
	admin     string
	srv       string // replaces /srv/www in the examples
	fcgiAddr  string
	hello     *Repo
	blog      *Repo
	helloHead string
	blogHead  string
}

func newWebSites(t *testing.T) *webSites {
	t.Helper()
	e := NewEnv(t)
	w := &webSites{e: e, admin: e.AddKey("alice", "admin", ""), srv: filepath.Join(e.Dir, "srv", "www")}
	e.MustEeveon("site", "add", "hello", "--path", filepath.Join(w.srv, "hello"), "--build", "./build.sh", "--health-cmd", "./health.sh")
	e.MustEeveon("site", "add", "blog", "--path", filepath.Join(w.srv, "blog"))
	w.hello = e.NewRepo("hello", exampleFiles(t, "hello"))
	w.blog = e.NewRepo("blog", map[string]string{
		"public/index.php": "<?php echo 'blog';\n",
		"public/.env":      "SECRET=1\n",
		"composer.json":    "{}\n",
	})
	w.helloHead = w.push(t, w.hello, "hello", "blue")
	w.blogHead = w.push(t, w.blog, "blog", "blue")

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	w.fcgiAddr = ln.Addr().String()
	go func() {
		_ = fcgi.Serve(ln, http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			env := fcgi.ProcessEnv(r)
			fmt.Fprintf(rw, "SCRIPT_FILENAME=%s\nDOCUMENT_ROOT=%s\n", env["SCRIPT_FILENAME"], env["DOCUMENT_ROOT"])
		}))
	}()
	t.Cleanup(func() { ln.Close() })
	return w
}

// push pushes repo's head to site and checks it went live on color.
func (w *webSites) push(t *testing.T, repo *Repo, site, color string) string {
	t.Helper()
	head := repo.Git("rev-parse", "HEAD")
	r := repo.Push(w.admin, site)
	if r.Code != 0 || !strings.Contains(r.Stderr, "live: "+site+" "+head[:7]+" on "+color) {
		t.Fatalf("push %s: exit %d, want live on %s\n%s", site, r.Code, color, r.Out())
	}
	return head
}

// colorRoot is the resolved public/ directory of a colour of site.
func (w *webSites) colorRoot(t *testing.T, site, color string) string {
	t.Helper()
	p, err := filepath.EvalSymlinks(filepath.Join(w.srv, site, color, "public"))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// check asks the web server at addr for both sites: hello must serve the
// page of its live commit and colour, and blog must hand PHP the real
// path of its live colour, never current.
func (w *webSites) check(t *testing.T, server, addr, helloColor, blogColor string) {
	t.Helper()
	code, body := exGet(t, "http://"+addr+"/", "hello.example.com")
	want := "Commit " + w.helloHead + ", served from the " + helloColor + " colour."
	if code != 200 || !strings.Contains(body, want) {
		t.Errorf("%s: GET hello / = %d, want 200 with %q:\n%s", server, code, want, body)
	}
	root := w.colorRoot(t, "blog", blogColor)
	for _, path := range []string{"/index.php", "/posts/1?x=y"} {
		code, body := exGet(t, "http://"+addr+path, "blog.example.com")
		if code != 200 || !strings.Contains(body, "SCRIPT_FILENAME="+root+"/index.php\n") {
			t.Errorf("%s: GET blog %s = %d, want SCRIPT_FILENAME in %s (the colour's real path, not current):\n%s", server, path, code, root, body)
		}
		if !strings.Contains(body, "DOCUMENT_ROOT="+root+"\n") {
			t.Errorf("%s: GET blog %s: want DOCUMENT_ROOT=%s:\n%s", server, path, root, body)
		}
	}
	if code, body := exGet(t, "http://"+addr+"/.env", "blog.example.com"); code != 403 && code != 404 {
		t.Errorf("%s: GET blog /.env = %d, want it refused:\n%s", server, code, body)
	}
}

// swap pushes a new commit to both sites, which go live on green.
func (w *webSites) swap(t *testing.T) {
	t.Helper()
	w.hello.Commit("second", nil)
	w.helloHead = w.push(t, w.hello, "hello", "green")
	w.blog.Commit("second", nil)
	w.blogHead = w.push(t, w.blog, "blog", "green")
}

func TestExampleNginx(t *testing.T) {
	nginx, err := exec.LookPath("nginx")
	if err != nil {
		if _, err := os.Stat("/usr/sbin/nginx"); err != nil {
			t.Skip("nginx is not installed (.ci/run installs it)")
		}
		nginx = "/usr/sbin/nginx"
	}
	t.Parallel()
	w := newWebSites(t)
	dir := filepath.Join(w.e.Dir, "nginx")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	addr := "127.0.0.1:" + port

	// The template step: the examples' paths, port and PHP-FPM socket
	// become the test's.
	for _, c := range []struct{ name, site string }{{"hello.conf", "hello"}, {"blog-php.conf", "blog"}} {
		file := "examples/nginx/" + c.name
		conf := exReadExample(t, "nginx/"+c.name)
		conf = exReplace(t, file, conf, "\troot /srv/www/"+c.site+"/current/public;", "\troot "+w.srv+"/"+c.site+"/current/public;", 1)
		conf = exReplace(t, file, conf, "\tlisten 80;\n", "\tlisten "+addr+";\n", 1)
		conf = exReplace(t, file, conf, "\tlisten [::]:80;\n", "", 1)
		if c.site == "blog" {
			conf = exReplace(t, file, conf, "fastcgi_pass unix:/run/php/php-fpm.sock;", "fastcgi_pass "+w.fcgiAddr+";", 1)
		}
		if err := os.WriteFile(filepath.Join(dir, c.name), []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	params, err := os.ReadFile("/etc/nginx/fastcgi_params")
	if err != nil {
		t.Logf("no /etc/nginx/fastcgi_params (%v): using a minimal one", err)
		params = []byte("fastcgi_param QUERY_STRING $query_string;\nfastcgi_param REQUEST_METHOD $request_method;\nfastcgi_param REQUEST_URI $request_uri;\nfastcgi_param DOCUMENT_ROOT $document_root;\n")
	}
	if err := os.WriteFile(filepath.Join(dir, "fastcgi_params"), params, 0o644); err != nil {
		t.Fatal(err)
	}
	userLine := ""
	if os.Geteuid() == 0 {
		userLine = "user root;\n" // the sites are in the test's 0700 temp dir
	}
	mainConf := userLine + "worker_processes 1;\npid " + dir + "/nginx.pid;\nerror_log " + dir + "/error.log;\n" +
		"events { worker_connections 64; }\n" +
		"http {\n\ttypes { text/html html; text/css css; }\n\taccess_log " + dir + "/access.log;\n" +
		"\tclient_body_temp_path " + dir + "/body;\n\tproxy_temp_path " + dir + "/proxy;\n\tfastcgi_temp_path " + dir + "/fastcgi;\n" +
		"\tuwsgi_temp_path " + dir + "/uwsgi;\n\tscgi_temp_path " + dir + "/scgi;\n" +
		"\tinclude hello.conf;\n\tinclude blog-php.conf;\n}\n"
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, []byte(mainConf), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"-p", dir, "-e", dir + "/error.log", "-c", conf}
	if r := run(t, dir, nil, "", nginx, append(args, "-t")...); r.Code != 0 || !strings.Contains(r.Stderr, "test is successful") {
		t.Fatalf("nginx -t on the examples: exit %d\n%s", r.Code, r.Out())
	}
	ng := exStart(t, exec.Command(nginx, append(args, "-g", "daemon off;")...))
	exWaitTCP(t, addr, ng.exited, ng.out)

	w.check(t, "nginx", addr, "blue", "blue")
	// No reload between the swap and the next request.
	w.swap(t)
	w.check(t, "nginx", addr, "green", "green")
	w.e.MustEeveon("rollback", "hello")
	if code, body := exGet(t, "http://"+addr+"/", "hello.example.com"); code != 200 || !strings.Contains(body, "served from the blue colour") {
		t.Errorf("nginx after rollback: %d\n%s", code, body)
	}
	if err := ng.stop(t, syscall.SIGQUIT, 10*time.Second); err != nil {
		t.Errorf("nginx: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "error.log")); bytes.Contains(b, []byte("[emerg]")) || bytes.Contains(b, []byte("[crit]")) {
		t.Errorf("nginx error log:\n%s", b)
	}
}

func TestExampleCaddy(t *testing.T) {
	caddy, err := exec.LookPath("caddy")
	if err != nil {
		t.Skip("caddy is not installed (.ci/run installs it)")
	}
	t.Parallel()
	const file = "examples/caddy/Caddyfile"
	orig := exReadExample(t, "caddy/Caddyfile")
	w := newWebSites(t)
	dir := filepath.Join(w.e.Dir, "caddy")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	// Caddy keeps certificates and autosaved config under HOME and XDG.
	env := []string{"HOME=" + dir, "XDG_DATA_HOME=" + dir, "XDG_CONFIG_HOME=" + dir}

	abs, err := filepath.Abs(filepath.Join(examplesDir, "caddy", "Caddyfile"))
	if err != nil {
		t.Fatal(err)
	}
	if r := run(t, dir, env, "", caddy, "fmt", abs); r.Code != 0 || r.Stdout != orig {
		t.Errorf("%s is not as caddy fmt writes it (exit %d):\n%s", file, r.Code, r.Out())
	}
	if r := run(t, dir, env, "", caddy, "validate", "--adapter", "caddyfile", "--config", abs); r.Code != 0 || !strings.Contains(r.Out(), "Valid configuration") {
		t.Fatalf("caddy validate %s: exit %d\n%s", file, r.Code, r.Out())
	}

	port := freePort(t)
	addr := "127.0.0.1:" + port
	conf := exReplace(t, file, orig, "\troot * /srv/www/hello/current/public\n", "\troot * "+w.srv+"/hello/current/public\n", 1)
	conf = exReplace(t, file, conf, "\troot * /srv/www/blog/current/public\n", "\troot * "+w.srv+"/blog/current/public\n", 1)
	conf = exReplace(t, file, conf, "\nhello.example.com {", "\nhttp://hello.example.com:"+port+" {", 1)
	conf = exReplace(t, file, conf, "\nblog.example.com {", "\nhttp://blog.example.com:"+port+" {", 1)
	conf = exReplace(t, file, conf, "php_fastcgi unix//run/php/php-fpm.sock {", "php_fastcgi "+w.fcgiAddr+" {", 1)
	conf = "{\n\tadmin off\n\tdefault_bind 127.0.0.1\n}\n\n" + conf
	path := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(caddy, "run", "--adapter", "caddyfile", "--config", path)
	cmd.Env = append(os.Environ(), env...)
	cmd.Dir = dir
	cd := exStart(t, cmd)
	exWaitTCP(t, addr, cd.exited, cd.out)

	w.check(t, "caddy", addr, "blue", "blue")
	w.swap(t)
	w.check(t, "caddy", addr, "green", "green")
	if err := cd.stop(t, syscall.SIGTERM, 10*time.Second); err != nil {
		t.Errorf("caddy: %v", err)
	}
}

// unit is a systemd unit file: section -> key -> values in order.
type unit map[string]map[string][]string

func parseUnit(t *testing.T, name, text string) unit {
	t.Helper()
	u := unit{}
	section := ""
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
			continue
		case strings.HasSuffix(line, `\`):
			t.Fatalf("%s:%d: a continued line; the test's parser does not join them", name, i+1)
		case line[0] == '[' && line[len(line)-1] == ']':
			section = line[1 : len(line)-1]
			if u[section] == nil {
				u[section] = map[string][]string{}
			}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: not a key=value in a section: %q", name, i+1, line)
			}
			u[section][strings.TrimSpace(k)] = append(u[section][strings.TrimSpace(k)], strings.TrimSpace(v))
		}
	}
	return u
}

// last is the effective value of a single-valued key ("" if unset).
func (u unit) last(key string) string {
	v := u["Service"][key]
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

func TestExampleSystemdUnit(t *testing.T) {
	t.Parallel()
	const name = "examples/systemd/eeveon.service"
	text := exReadExample(t, "systemd/eeveon.service")
	dropIn := exReadExample(t, "systemd/run-as-root.conf")
	u := parseUnit(t, name, text)

	// The hardening the issue asks for, and the settings eeveon relies on.
	for key, want := range map[string]string{
		"NoNewPrivileges":       "yes",
		"ProtectSystem":         "strict",
		"CapabilityBoundingSet": "",
		"KillMode":              "mixed",
		"StateDirectoryMode":    "0700",
		"PrivateTmp":            "yes",
		"ProtectHome":           "yes",
		"RestrictSUIDSGID":      "yes",
	} {
		if vals := u["Service"][key]; len(vals) == 0 || u.last(key) != want {
			t.Errorf("%s: %s=%q, want %q", name, key, vals, want)
		}
	}
	if usr, dyn := u.last("User"), u.last("DynamicUser"); (usr == "" || usr == "root") && dyn != "yes" {
		t.Errorf("%s: runs as root (User=%q, DynamicUser=%q)", name, usr, dyn)
	}
	// The credential's name is the one eeveon reads.
	cred, _, _ := strings.Cut(u.last("LoadCredential"), ":")
	if cred != secrets.CredentialName {
		t.Errorf("%s: LoadCredential=%s, eeveon reads $CREDENTIALS_DIRECTORY/%s", name, u.last("LoadCredential"), secrets.CredentialName)
	}
	// ExecStart's data dir is the one systemd creates and lets it write.
	argv := strings.Fields(u.last("ExecStart"))
	if strings.ContainsAny(u.last("ExecStart"), `"'$%`) || len(argv) < 2 || argv[1] != "serve" {
		t.Fatalf("%s: ExecStart=%q: want a plain `eeveon serve` command line", name, u.last("ExecStart"))
	}
	dataDir := ""
	for i, a := range argv {
		if a == "--data" && i+1 < len(argv) {
			dataDir = argv[i+1]
		}
	}
	if want := "/var/lib/" + u.last("StateDirectory"); dataDir != want {
		t.Errorf("%s: serve --data %q, but StateDirectory= makes %s", name, dataDir, want)
	}
	// The shutdown grace of eeveon (plus 3s to deliver notifications) fits
	// in TimeoutStopSec.
	stop, err := time.ParseDuration(u.last("TimeoutStopSec"))
	if grace := deployer.Default().Deploy.ShutdownTimeout.Duration + 3*time.Second; err != nil || stop <= grace {
		t.Errorf("%s: TimeoutStopSec=%s, want more than eeveon's default shutdown grace %s", name, u.last("TimeoutStopSec"), grace)
	}
	// The web server examples serve sites from a path the unit may write.
	rw := strings.Fields(strings.Join(u["Service"]["ReadWritePaths"], " "))
	if len(rw) == 0 || rw[0] != "/srv/www" {
		t.Errorf("%s: ReadWritePaths=%q, want /srv/www first", name, rw)
	}
	for _, ex := range []string{"nginx/hello.conf", "nginx/blog-php.conf", "caddy/Caddyfile"} {
		if !strings.Contains(exReadExample(t, ex), "/srv/www/") {
			t.Errorf("examples/%s serves no site under /srv/www, which the unit lets eeveon write", ex)
		}
	}

	dir := t.TempDir()
	installed := exReplace(t, name, text, "\nExecStart="+argv[0]+" ", "\nExecStart="+bin+" ", 1)
	t.Run("systemd-analyze", func(t *testing.T) {
		sa, err := exec.LookPath("systemd-analyze")
		if err != nil {
			t.Skip("no systemd-analyze: the unit is checked by the parser above and by running it below")
		}
		// The unit alone, then with the drop-in in eeveon.service.d/.
		alone := filepath.Join(dir, "alone")
		withDrop := filepath.Join(dir, "with-drop-in")
		for _, d := range []string{alone, filepath.Join(withDrop, "eeveon.service.d")} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		for _, d := range []string{alone, withDrop} {
			if err := os.WriteFile(filepath.Join(d, "eeveon.service"), []byte(installed), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(withDrop, "eeveon.service.d", "run-as-root.conf"), []byte(dropIn), 0o644); err != nil {
			t.Fatal(err)
		}
		// Exposure scores are 0-100 here (systemd prints them /10): the
		// unit alone scores about 15, with the drop-in about 26 (root).
		for _, c := range []struct {
			dir, threshold, user string
		}{{alone, "20", "static non-root user"}, {withDrop, "30", "runs as root"}} {
			env := []string{"SYSTEMD_UNIT_PATH=" + c.dir + ":", "SYSTEMD_LOG_COLOR=0"}
			if r := run(t, c.dir, env, "", sa, "verify", "--man=no", filepath.Join(c.dir, "eeveon.service")); r.Code != 0 || strings.TrimSpace(r.Out()) != "" {
				t.Errorf("systemd-analyze verify (%s): exit %d\n%s", c.dir, r.Code, r.Out())
			}
			r := run(t, c.dir, env, "", sa, "security", "--offline=true", "--threshold="+c.threshold, filepath.Join(c.dir, "eeveon.service"))
			if r.Code != 0 || !strings.Contains(r.Stdout, c.user) {
				t.Errorf("systemd-analyze security (%s): exit %d, want exposure at most %s and %q:\n%s", c.dir, r.Code, c.threshold, c.user, r.Out())
			}
			for _, l := range strings.Split(r.Stdout, "\n") {
				if strings.Contains(l, "Overall exposure") {
					t.Logf("%s: %s", filepath.Base(c.dir), strings.TrimSpace(l))
				}
			}
		}
	})

	t.Run("ExecStart", func(t *testing.T) {
		exRunUnit(t, u, argv, dataDir)
	})
	t.Run("run-as-root drop-in", func(t *testing.T) {
		exRunDropIn(t, parseUnit(t, "examples/systemd/run-as-root.conf", dropIn))
	})
}

// exSetpriv is the setpriv(1) command line that gives a process what the
// unit would: the user (when the test runs as root), the capability
// bounding set, no new privileges. It is nil when it cannot be done here.
func exSetpriv(t *testing.T, uid, gid string, caps []string) []string {
	t.Helper()
	if os.Geteuid() != 0 {
		return nil
	}
	sp, err := exec.LookPath("setpriv")
	if err != nil {
		return nil
	}
	bounding := "-all"
	for _, c := range caps {
		bounding += ",+" + strings.ToLower(strings.TrimPrefix(c, "CAP_"))
	}
	args := []string{sp, "--no-new-privs", "--inh-caps=-all", "--bounding-set=" + bounding}
	if uid != "" {
		args = append(args, "--reuid="+uid, "--regid="+gid, "--clear-groups")
	}
	return append(args, "--")
}

// exServe starts a server command line and waits for its control socket.
func exServe(t *testing.T, argv, env []string, data string) *exProc {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	p := exStart(t, cmd)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("unix", filepath.Join(data, "eeveon.sock")); err == nil {
			c.Close()
			return p
		}
		select {
		case <-p.exited:
			t.Fatalf("%q exited at start: %v\n%s", argv, p.err, p.out)
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("%q did not open its control socket:\n%s", argv, p.out)
	return nil
}

// exEeveon runs the local CLI (as the test's user: root is admin).
func exEeveon(t *testing.T, data, stdin string, args ...string) Result {
	t.Helper()
	return run(t, filepath.Dir(data), nil, stdin, bin, append(args, "--data", data)...)
}

// exRunUnit runs the unit's ExecStart as systemd would: its arguments,
// its Environment=, its UMask=, its user (nobody stands in for eeveon when
// the test runs as root) without capabilities or new privileges, and its
// age key as a credential. A deploy and a secret go through it.
func exRunUnit(t *testing.T, u unit, argv []string, unitData string) {
	// Not t.TempDir(): the unit's user must be able to pass through
	// its parents.
	root, err := os.MkdirTemp("", "eeveon-unit-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	data := filepath.Join(root, "data")
	site := filepath.Join(root, "srv", "www", "web")
	creds := filepath.Join(root, "credentials")
	if err := os.MkdirAll(creds, 0o700); err != nil {
		t.Fatal(err)
	}
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(creds, secrets.CredentialName), []byte(id.String()+"\n"), 0o400); err != nil {
		t.Fatal(err)
	}
	// The site, and a commit stored in its repository before the start.
	if r := exEeveon(t, data, "", "init"); r.Code != 0 {
		t.Fatalf("init: %s", r.Out())
	}
	if r := exEeveon(t, data, "", "site", "add", "web", "--path", site, "--build", "mkdir -p public && echo \"commit $EEVEON_COMMIT\" > public/index.html"); r.Code != 0 {
		t.Fatalf("site add: %s", r.Out())
	}
	commit := exStoreCommit(t, root, data, "web")
	// The key is the credential only: eeveon must not make one of its own.
	_ = os.Remove(filepath.Join(data, secrets.KeyFile))

	// systemd sets HOME to the user's home, which the install steps make
	// the data dir.
	env := []string{"CREDENTIALS_DIRECTORY=" + creds, "HOME=" + data, "LANG=C.UTF-8"}
	for _, kv := range u["Service"]["Environment"] {
		env = append(env, kv)
	}
	pre := exSetpriv(t, "", "", nil)
	unitUID := ""
	if pre != nil {
		nobody, err := user.Lookup("nobody")
		if err != nil {
			t.Skip("no user nobody to stand in for the unit's user")
		}
		unitUID = nobody.Uid
		pre = exSetpriv(t, nobody.Uid, nobody.Gid, strings.Fields(u.last("CapabilityBoundingSet")))
		if err := os.MkdirAll(filepath.Join(root, "srv", "www"), 0o755); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{root, filepath.Join(root, "srv"), filepath.Join(root, "srv", "www")} {
			if err := os.Chmod(p, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		uid, _ := strconv.Atoi(nobody.Uid)
		gid, _ := strconv.Atoi(nobody.Gid)
		for _, p := range []string{data, creds, filepath.Join(root, "srv", "www")} {
			if err := exChownR(p, uid, gid); err != nil {
				t.Fatal(err)
			}
		}
	} else {
		t.Log("not root or no setpriv: ExecStart runs as the test's user, capabilities untouched")
	}
	// ExecStart, with the test's binary (installed 0755 where the unit's
	// user may run it) and data dir, through sh for the umask; an SSH port
	// of the test's own.
	exe := filepath.Join(root, "eeveon")
	if b, err := os.ReadFile(bin); err != nil || os.WriteFile(exe, b, 0o755) != nil {
		t.Fatalf("install eeveon: %v", err)
	}
	args := append([]string{}, argv...)
	args[0] = exe
	for i := range args {
		if args[i] == unitData {
			args[i] = data
		}
	}
	args = append(args, "--listen", "127.0.0.1:"+freePort(t))
	line := append([]string{"/bin/sh", "-c", `umask "$0"; exec "$@"`, u.last("UMask")}, args...)
	srv := exServe(t, append(pre, line...), env, data)

	if r := exEeveon(t, data, "", "deploy", "web"); r.Code != 0 || !strings.Contains(r.Out(), "live: web "+commit[:7]+" on blue") {
		t.Fatalf("deploy under the unit's settings: exit %d\n%s", r.Code, r.Out())
	}
	page := filepath.Join(site, "current", "public", "index.html")
	if b, err := os.ReadFile(page); err != nil || string(b) != "commit "+commit+"\n" {
		t.Errorf("live page %q, %v", b, err)
	}
	// UMask=0027: the site is for the web server's group, not for others.
	fi, err := os.Stat(page)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm()&0o007 != 0 {
		t.Errorf("with UMask=%s the live page has mode %v, want no access for others", u.last("UMask"), fi.Mode())
	}
	if st := fi.Sys().(*syscall.Stat_t); pre != nil && strconv.Itoa(int(st.Uid)) != unitUID {
		t.Errorf("the live page belongs to uid %d, want the unit's user (%s)", st.Uid, unitUID)
	}
	// Secrets are encrypted to the credential's key.
	if r := exEeveon(t, data, "s3cret\n", "secrets", "set", "web", "TOKEN"); r.Code != 0 {
		t.Fatalf("secrets set: exit %d\n%s", r.Code, r.Out())
	}
	if _, err := os.Stat(filepath.Join(data, secrets.KeyFile)); !os.IsNotExist(err) {
		t.Errorf("with the credential present, eeveon made %s: %v", secrets.KeyFile, err)
	}
	f, err := os.Open(filepath.Join(data, "secrets", "web.age"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	plain, err := age.Decrypt(f, id)
	if err != nil {
		t.Fatalf("the secrets store does not open with the credential's key: %v", err)
	}
	if b, _ := io.ReadAll(plain); !bytes.Contains(b, []byte("TOKEN")) {
		t.Errorf("decrypted store lacks TOKEN")
	}
	if err := srv.stop(t, syscall.SIGTERM, 10*time.Second); err != nil {
		t.Errorf("serve on SIGTERM: %v\n%s", err, srv.out)
	}
}

// exStoreCommit makes a commit and pushes it straight into the sites'
// repositories (no server runs yet: the push is stored, not deployed).
func exStoreCommit(t *testing.T, root, data string, sites ...string) string {
	t.Helper()
	work := filepath.Join(root, "work")
	git := func(args ...string) string {
		t.Helper()
		r := run(t, root, []string{"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@test", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@test"}, "", "git", args...)
		if r.Code != 0 {
			t.Fatalf("git %q: %s", args, r.Out())
		}
		return strings.TrimSpace(r.Stdout)
	}
	git("init", "-q", "-b", "main", work)
	git("-C", work, "commit", "-q", "--allow-empty", "-m", "1")
	// Fetched in, not pushed: a push deploys (and is refused while no
	// server runs), a fetch only stores.
	for _, s := range sites {
		git("--git-dir", filepath.Join(data, "repos", s+".git"), "fetch", "-q", work, "main:main")
	}
	return git("-C", work, "rev-parse", "HEAD")
}

func exChownR(root string, uid, gid int) error {
	return filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
}

// exRunDropIn runs the server as root with only the drop-in's
// capabilities and no new privileges, and run_as set: builds run as
// nobody, an old colour that nobody wrote is replaced, and a build that
// overruns is killed on time.
func exRunDropIn(t *testing.T, d unit) {
	caps := strings.Fields(d.last("CapabilityBoundingSet"))
	if d.last("User") != "" || len(caps) == 0 {
		t.Fatalf("run-as-root.conf: User=%q CapabilityBoundingSet=%q: want root with a list", d.last("User"), caps)
	}
	pre := exSetpriv(t, "", "", caps)
	if pre == nil {
		t.Skip("needs root and setpriv to emulate the drop-in")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody to build as")
	}
	root, err := os.MkdirTemp("", "eeveon-dropin-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(root, "data")
	if r := exEeveon(t, data, "", "init"); r.Code != 0 {
		t.Fatalf("init: %s", r.Out())
	}
	if err := os.WriteFile(filepath.Join(data, "eeveon.toml"), []byte("[deploy]\nrun_as = \"nobody\"\nbuild_timeout = \"1s\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The build leaves a directory only its owner may write to, which
	// root without CAP_DAC_OVERRIDE could not clear.
	build := "mkdir -p public/locked && id -u > public/uid && echo x > public/locked/f && chmod 555 public/locked"
	for _, args := range [][]string{
		{"site", "add", "web", "--path", filepath.Join(root, "web"), "--build", build},
		{"site", "add", "slow", "--path", filepath.Join(root, "slow"), "--build", "sleep 30"},
	} {
		if r := exEeveon(t, data, "", args...); r.Code != 0 {
			t.Fatalf("%q: %s", args, r.Out())
		}
	}
	exStoreCommit(t, root, data, "web", "slow")
	srv := exServe(t, append(pre, bin, "serve", "--data", data, "--listen", "off"), os.Environ(), data)
	if status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", srv.cmd.Process.Pid)); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(status))
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "CapEff:") || strings.HasPrefix(sc.Text(), "NoNewPrivs:") {
				t.Log(sc.Text())
			}
		}
	}
	for i, want := range []string{"blue", "green", "blue"} {
		r := exEeveon(t, data, "", "deploy", "web")
		if r.Code != 0 || !strings.Contains(r.Out(), " on "+want) {
			t.Fatalf("deploy %d with the drop-in's capabilities: exit %d, want live on %s\n%s", i+1, r.Code, want, r.Out())
		}
	}
	if b, _ := os.ReadFile(filepath.Join(root, "web", "current", "public", "uid")); strings.TrimSpace(string(b)) != nobody.Uid {
		t.Errorf("the build ran as uid %q, want nobody (%s)", b, nobody.Uid)
	}
	start := time.Now()
	r := exEeveon(t, data, "", "deploy", "slow")
	if took := time.Since(start); r.Code == 0 || !strings.Contains(r.Out(), "timed out") || took > 10*time.Second {
		t.Errorf("a build over build_timeout (1s): exit %d after %s, want a timeout that kills it:\n%s", r.Code, took.Round(time.Millisecond), r.Out())
	}
	if err := srv.stop(t, syscall.SIGTERM, 10*time.Second); err != nil {
		t.Errorf("serve on SIGTERM: %v\n%s", err, srv.out)
	}
}

// TestExampleNginxOnSwap: examples/nginx/on-swap-nginx.sh, run by eeveon's
// on_swap after each switch of an app site, points a real nginx at the new
// colour's port (api-upstream.conf) and reloads it.
func TestExampleNginxOnSwap(t *testing.T) {
	nginx, err := exec.LookPath("nginx")
	if err != nil {
		if _, err := os.Stat("/usr/sbin/nginx"); err != nil {
			t.Skip("nginx is not installed (.ci/run installs it)")
		}
		nginx = "/usr/sbin/nginx"
	}
	t.Parallel()
	appBin := testAppBinary(t)
	e := newAppEnv(t)
	admin := e.AddKey("admin", "admin", "")
	dir := filepath.Join(e.Dir, "nginx")
	upstreams := filepath.Join(dir, "eeveon")
	if err := os.MkdirAll(upstreams, 0o755); err != nil {
		t.Fatal(err)
	}
	hook := filepath.Join(dir, "on-swap-nginx.sh")
	if err := os.WriteFile(hook, []byte(exReadExample(t, "nginx/on-swap-nginx.sh")), 0o755); err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + freePort(t)
	site := exReadExample(t, "nginx/api-upstream.conf")
	site = exReplace(t, "examples/nginx/api-upstream.conf", site, "include /etc/nginx/eeveon/api-upstream.conf;", "include "+upstreams+"/api-upstream.conf;", 1)
	site = exReplace(t, "examples/nginx/api-upstream.conf", site, "\tlisten 80;\n", "\tlisten "+addr+";\n", 1)
	site = exReplace(t, "examples/nginx/api-upstream.conf", site, "\tlisten [::]:80;\n", "", 1)
	mainConf := "worker_processes 1;\npid " + dir + "/nginx.pid;\nerror_log " + dir + "/error.log;\n" +
		"events { worker_connections 64; }\nhttp {\n\taccess_log " + dir + "/access.log;\n" +
		"\tclient_body_temp_path " + dir + "/body;\n\tproxy_temp_path " + dir + "/proxy;\n\tfastcgi_temp_path " + dir + "/fastcgi;\n" +
		"\tuwsgi_temp_path " + dir + "/uwsgi;\n\tscgi_temp_path " + dir + "/scgi;\n" + site + "\n}\n"
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, []byte(mainConf), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"-p", dir, "-e", dir + "/error.log", "-c", conf}
	onSwap := "EEVEON_NGINX_DIR='" + upstreams + "' NGINX_RELOAD='" + nginx + " " + strings.Join(args, " ") + " -s reload' '" + hook + "'"
	e.MustEeveon("site", "add", "api", "--start", "exec "+appBin, "--proxy", "127.0.0.1:"+freePort(t), "--on-swap", onSwap)

	// The first switch writes the upstream; nginx is not running yet, so
	// its reload fails and eeveon says so, the deploy stands.
	repo := e.NewRepo("api", map[string]string{"VERSION": "v1\n"})
	if r := repo.Push(admin, "api"); r.Code != 0 || !strings.Contains(r.Stderr, "live: api") || !strings.Contains(r.Stderr, "warning: on_swap") {
		t.Fatalf("first push: exit %d\n%s", r.Code, r.Out())
	}
	ng := exStart(t, exec.Command(nginx, append(args, "-g", "daemon off;")...))
	exWaitTCP(t, addr, ng.exited, ng.out)
	if code, body := exGet(t, "http://"+addr+"/", "api.example.com"); code != 200 || strings.TrimSpace(body) != "v1" {
		t.Fatalf("nginx before the second deploy: %d %q", code, body)
	}
	repo.Commit("v2", map[string]string{"VERSION": "v2\n"})
	if r := repo.Push(admin, "api"); r.Code != 0 || !strings.Contains(r.Stderr, "nginx now sends api to green") {
		t.Fatalf("second push: exit %d\n%s", r.Code, r.Out())
	}
	pollUntil(t, 10*time.Second, "nginx to serve v2", func() bool {
		code, body := exGet(t, "http://"+addr+"/", "api.example.com")
		return code == 200 && strings.TrimSpace(body) == "v2"
	})
	if err := ng.stop(t, syscall.SIGQUIT, 10*time.Second); err != nil {
		t.Errorf("nginx: %v", err)
	}
	e.Stop()
}
