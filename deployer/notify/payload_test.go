package notify

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/eeveon/eeveon/deployer"
)

var (
	testNow     = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	testExpires = testNow.Add(time.Hour)
	testCommit  = "0123456789abcdef0123456789abcdef01234567"
)

func pendingEvent() deployer.Event {
	exp := testExpires
	return deployer.Event{Kind: "pending_approval", Record: deployer.Record{
		ID: "20260304-050607-ab12", Site: "critical", Commit: testCommit, Ref: "refs/heads/main",
		Color: "green", State: deployer.StatePendingApproval, User: "bob", ExpiresAt: &exp,
	}}
}

// decode unmarshals a payload into a generic document.
func decode(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("payload is not a JSON object: %v\n%s", err, b)
	}
	return doc
}

// at walks a decoded document along keys and indexes.
func at(t *testing.T, doc any, path ...any) any {
	t.Helper()
	cur := doc
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := cur.(map[string]any)
			if !ok {
				t.Fatalf("%v: not an object at %q", path, k)
			}
			cur = m[k]
		case int:
			a, ok := cur.([]any)
			if !ok || k >= len(a) {
				t.Fatalf("%v: no element %d", path, k)
			}
			cur = a[k]
		}
	}
	return cur
}

func TestWebhookPayload(t *testing.T) {
	m := NewMessage(pendingEvent(), testNow)
	m.ApproveURL = "http://127.0.0.1:8080/approve/tok"
	b, err := Payload(deployer.NotifyWebhook, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	doc := decode(t, b)
	want := map[string]any{
		"event": "pending_approval", "site": "critical", "deploy_id": "20260304-050607-ab12",
		"commit": testCommit, "short_commit": "0123456", "ref": "refs/heads/main", "color": "green",
		"state": "pending_approval", "user": "bob", "approved_by": "", "error": "",
		"time": "2026-03-04T05:06:07Z", "expires_at": "2026-03-04T06:06:07Z",
		"approve_url": "http://127.0.0.1:8080/approve/tok",
	}
	for k, v := range want {
		if doc[k] != v {
			t.Errorf("%s = %#v, want %#v", k, doc[k], v)
		}
	}
	if txt, _ := doc["text"].(string); !strings.Contains(txt, "critical: 0123456 by bob is built and healthy on green and awaits approval") {
		t.Errorf("text = %q", txt)
	}
	if len(doc) != len(want)+1 {
		t.Errorf("unexpected keys in %s", b)
	}

	// Other events carry no expiry and no link.
	live := pendingEvent()
	live.Kind, live.Record.State = "live", deployer.StateLive
	doc = decode(t, must(Payload(deployer.NotifyWebhook, NewMessage(live, testNow), nil)))
	if _, ok := doc["approve_url"]; ok {
		t.Error("live payload has approve_url")
	}
	if _, ok := doc["expires_at"]; ok {
		t.Error("live payload has expires_at")
	}
	if doc["text"] != "critical: 0123456 is live on green (deploy 20260304-050607-ab12 by bob)" {
		t.Errorf("live text = %q", doc["text"])
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

func TestSlackPayload(t *testing.T) {
	m := NewMessage(pendingEvent(), testNow)
	m.ApproveURL = "https://deploy.example.com/approve/tok"
	doc := decode(t, must(Payload(deployer.NotifySlack, m, nil)))
	if txt, _ := doc["text"].(string); !strings.HasPrefix(txt, "critical: 0123456 by bob") {
		t.Errorf("fallback text = %q", txt)
	}
	if at(t, doc, "blocks", 0, "type") != "section" || at(t, doc, "blocks", 0, "text", "type") != "mrkdwn" {
		t.Errorf("first block is not a mrkdwn section: %v", at(t, doc, "blocks", 0))
	}
	if s, _ := at(t, doc, "blocks", 0, "text", "text").(string); !strings.HasPrefix(s, "*critical*: 0123456 by bob") {
		t.Errorf("section text = %q", s)
	}
	blocks := at(t, doc, "blocks").([]any)
	last := blocks[len(blocks)-1]
	if at(t, last, "type") != "actions" || at(t, last, "elements", 0, "type") != "button" ||
		at(t, last, "elements", 0, "url") != m.ApproveURL || at(t, last, "elements", 0, "text", "type") != "plain_text" {
		t.Errorf("no approve button: %v", last)
	}

	// Without a link there is no actions block, and values cannot form
	// Slack links or mentions.
	ev := pendingEvent()
	ev.Kind, ev.Record.State, ev.Record.Error = "failed", deployer.StateFailed, "build: <!channel> & <http://evil|click>"
	doc = decode(t, must(Payload(deployer.NotifySlack, NewMessage(ev, testNow), nil)))
	for _, b := range at(t, doc, "blocks").([]any) {
		if at(t, b, "type") == "actions" {
			t.Error("actions block without an approval link")
		}
	}
	s := at(t, doc, "blocks", 0, "text", "text").(string)
	if strings.ContainsAny(s, "<>") || !strings.Contains(s, "&lt;!channel&gt; &amp; &lt;http://evil|click&gt;") {
		t.Errorf("mrkdwn not escaped: %q", s)
	}
}

func TestDiscordPayload(t *testing.T) {
	m := NewMessage(pendingEvent(), testNow)
	m.ApproveURL = "https://deploy.example.com/approve/tok"
	doc := decode(t, must(Payload(deployer.NotifyDiscord, m, nil)))
	content, _ := doc["content"].(string)
	if !strings.HasPrefix(content, "critical: 0123456 by bob") || !strings.Contains(content, m.ApproveURL) {
		t.Errorf("content = %q", content)
	}
	if at(t, doc, "embeds", 0, "url") != m.ApproveURL || at(t, doc, "embeds", 0, "timestamp") != "2026-03-04T05:06:07Z" {
		t.Errorf("embed = %v", at(t, doc, "embeds", 0))
	}
	if at(t, doc, "embeds", 0, "color") != float64(0xecb22e) {
		t.Errorf("embed colour = %v", at(t, doc, "embeds", 0, "color"))
	}
	if p, ok := at(t, doc, "allowed_mentions", "parse").([]any); !ok || len(p) != 0 {
		t.Errorf("allowed_mentions = %v; want no mentions parsed", doc["allowed_mentions"])
	}
	fields := map[string]string{}
	for _, f := range at(t, doc, "embeds", 0, "fields").([]any) {
		fields[at(t, f, "name").(string)] = at(t, f, "value").(string)
	}
	if fields["Commit"] != "0123456" || fields["By"] != "bob" || fields["Expires"] != "2026-03-04T06:06:07Z" {
		t.Errorf("fields = %v", fields)
	}

	// Long errors are cut to Discord's limits.
	ev := pendingEvent()
	ev.Kind, ev.Record.Error = "failed", strings.Repeat("é", 3000)
	doc = decode(t, must(Payload(deployer.NotifyDiscord, NewMessage(ev, testNow), nil)))
	if c := doc["content"].(string); len(c) > 2000 || !strings.HasSuffix(c, "…") {
		t.Errorf("content not clipped: %d bytes", len(c))
	}
}

// Every string of every format goes through the mask, including text a
// format composes from several fields and escapes.
func TestPayloadMask(t *testing.T) {
	const secret = "s3cr&t-value"
	ev := pendingEvent()
	ev.Kind, ev.Record.State = "failed", deployer.StateFailed
	ev.Record.Error = "health check: curl -H 'Authorization: " + secret + "' failed"
	ev.Record.User = secret
	ev.Record.Ref = "refs/heads/" + secret
	calls := 0
	mask := func(s string) string { calls++; return strings.ReplaceAll(s, secret, "***") }
	for _, kind := range []string{deployer.NotifyWebhook, deployer.NotifySlack, deployer.NotifyDiscord} {
		b, err := Payload(kind, NewMessage(ev, testNow), mask)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), "s3cr") {
			t.Errorf("%s payload leaks the secret: %s", kind, b)
		}
		if !strings.Contains(string(b), "***") {
			t.Errorf("%s payload shows no mask: %s", kind, b)
		}
	}
	if calls == 0 {
		t.Fatal("mask never called")
	}
}

func TestSummaries(t *testing.T) {
	base := pendingEvent().Record
	tests := []struct {
		kind  deployer.EventKind
		tweak func(*deployer.Record)
		want  string
	}{
		{"deploy_started", nil, "critical: deploy 20260304-050607-ab12 of 0123456 started by bob"},
		{"approved", func(r *deployer.Record) { r.ApprovedBy = "alice" }, "critical: deploy 20260304-050607-ab12 of 0123456 approved by alice"},
		{"rejected", func(r *deployer.Record) { r.ApprovedBy = "carol" }, "critical: deploy 20260304-050607-ab12 of 0123456 rejected by carol"},
		{"expired", nil, "critical: the approval of deploy 20260304-050607-ab12 (0123456) expired"},
		{"rolled_back", func(r *deployer.Record) { r.Color = "blue" }, "critical: rolled back to 0123456 on blue by bob (deploy 20260304-050607-ab12)"},
		{"superseded", func(r *deployer.Record) { r.Error = "newer push" }, "critical: deploy 20260304-050607-ab12 of 0123456 superseded: newer push"},
		{"failed", func(r *deployer.Record) { r.State, r.Error = "interrupted", "server stopped" }, "critical: deploy 20260304-050607-ab12 of 0123456 interrupted: server stopped"},
		{"deploy_started", func(r *deployer.Record) { r.Commit, r.User = "", "" }, "critical: deploy 20260304-050607-ab12 of main started by unknown"},
	}
	for _, tt := range tests {
		r := base
		if tt.tweak != nil {
			tt.tweak(&r)
		}
		if got := NewMessage(deployer.Event{Kind: tt.kind, Record: r}, testNow).Text; got != tt.want {
			t.Errorf("%s: text = %q, want %q", tt.kind, got, tt.want)
		}
	}
}

func TestPayloadUnknownKind(t *testing.T) {
	if _, err := Payload("teams", NewMessage(pendingEvent(), testNow), nil); err == nil {
		t.Error("unknown kind accepted")
	}
}
