package httpapi

import (
	"bytes"
	"html/template"
	"net/http"
)

// page is what one response shows. html/template escapes every value.
type page struct {
	Title   string
	Message string // the outcome or the reason for a refusal
	// Confirm shows the deploy and the approve button (GET of a good link).
	Confirm bool
	// Result shows the deploy after a POST.
	Result bool

	Site, DeployID, Commit, Short, Ref, User, Color, State, Error string
	Expires, Approver                                             string
	Info                                                          commitInfo
	LiveShort                                                     string
	Log                                                           string
}

var pageTmpl = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex, nofollow">
<title>{{.Title}} · eeveon</title>
<style>
body{font-family:system-ui,sans-serif;max-width:50rem;margin:2rem auto;padding:0 1rem;color:#222}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.3rem 1rem}dt{font-weight:600}dd{margin:0}
pre{background:#f4f4f4;padding:.8rem;overflow:auto}code{font-size:.95em}
button{font-size:1.1rem;padding:.5rem 1.4rem;background:#2eb67d;color:#fff;border:0;border-radius:4px;cursor:pointer}
.note{color:#555}
</style>
</head>
<body>
<h1>{{.Title}}</h1>
{{with .Message}}<p>{{.}}</p>{{end}}
{{if or .Confirm .Result}}
<dl>
<dt>Site</dt><dd>{{.Site}}</dd>
<dt>Deploy</dt><dd><code>{{.DeployID}}</code></dd>
<dt>Commit</dt><dd><code>{{.Short}}</code> <span class="note">({{.Commit}})</span></dd>
{{with .Info.Subject}}<dt>Subject</dt><dd>{{.}}</dd>{{end}}
{{with .Info.Author}}<dt>Author</dt><dd>{{.}}</dd>{{end}}
{{with .Ref}}<dt>Ref</dt><dd>{{.}}</dd>{{end}}
{{with .User}}<dt>Pushed by</dt><dd>{{.}}</dd>{{end}}
{{with .Color}}<dt>Colour</dt><dd>{{.}}</dd>{{end}}
{{with .State}}<dt>State</dt><dd>{{.}}</dd>{{end}}
{{with .Error}}<dt>Error</dt><dd>{{.}}</dd>{{end}}
{{with .Expires}}<dt>Expires</dt><dd>{{.}}</dd>{{end}}
{{with .Approver}}<dt>Approve as</dt><dd>{{.}}</dd>{{end}}
</dl>
{{end}}
{{if .Confirm}}
<h2>Changes {{if .Info.Against}}against the live commit <code>{{.LiveShort}}</code>{{else}}in this commit (nothing is live yet){{end}}</h2>
<pre>{{or .Info.DiffStat "(diffstat unavailable)"}}</pre>
<form method="post">
<button type="submit">Approve and go live</button>
</form>
<p class="note">Nothing has been approved yet. The link works once, until it expires.</p>
{{end}}
{{with .Log}}<h2>Output</h2><pre>{{.}}</pre>{{end}}
</body>
</html>
`))

// render writes a page with the headers every response carries: no
// caching, no referrer (the URL is the credential), no framing.
func render(w http.ResponseWriter, status int, p page) {
	var buf bytes.Buffer
	if err := pageTmpl.Execute(&buf, p); err != nil {
		status = http.StatusInternalServerError
		buf.Reset()
		buf.WriteString("internal error\n")
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}
