package notify

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/eeveon/eeveon/deployer"
)

// Message is what one notification says, whatever its format.
type Message struct {
	Event       string     `json:"event"`
	Site        string     `json:"site"`
	DeployID    string     `json:"deploy_id"`
	Commit      string     `json:"commit"`
	ShortCommit string     `json:"short_commit"`
	Ref         string     `json:"ref"`
	Color       string     `json:"color"`
	State       string     `json:"state"`
	User        string     `json:"user"`
	ApprovedBy  string     `json:"approved_by"`
	Error       string     `json:"error"`
	Time        time.Time  `json:"time"`
	ExpiresAt   *time.Time `json:"expires_at,omitempty"`
	// ApproveURL is the one-click approval link of a pending_approval
	// notification, when the block has an approver and [http] is on.
	ApproveURL string `json:"approve_url,omitempty"`
	// Text is a one-line summary for people.
	Text string `json:"text"`
}

// NewMessage describes an engine event.
func NewMessage(ev deployer.Event, now time.Time) Message {
	r := ev.Record
	m := Message{
		Event: string(ev.Kind), Site: firstNonEmpty(r.Site, ev.Site.Name), DeployID: r.ID,
		Commit: r.Commit, ShortCommit: r.Short(), Ref: r.Ref, Color: r.Color, State: string(r.State),
		User: r.User, ApprovedBy: r.ApprovedBy, Error: r.Error, Time: now.UTC(),
	}
	if r.ExpiresAt != nil && ev.Kind == deployer.EventPendingApproval {
		t := r.ExpiresAt.UTC()
		m.ExpiresAt = &t
	}
	m.Text = summary(m)
	return m
}

// summary is the one-line text of a message.
func summary(m Message) string {
	what := m.ShortCommit
	if what == "" {
		what = strings.TrimPrefix(m.Ref, "refs/heads/")
	}
	by := firstNonEmpty(m.User, "unknown")
	switch m.Event {
	case "deploy_started":
		return fmt.Sprintf("%s: deploy %s of %s started by %s", m.Site, m.DeployID, what, by)
	case "live":
		return fmt.Sprintf("%s: %s is live on %s (deploy %s by %s)", m.Site, what, m.Color, m.DeployID, by)
	case "failed":
		return fmt.Sprintf("%s: deploy %s of %s %s: %s", m.Site, m.DeployID, what, m.State, m.Error)
	case "pending_approval":
		s := fmt.Sprintf("%s: %s by %s is built and healthy on %s and awaits approval (deploy %s)", m.Site, what, by, m.Color, m.DeployID)
		if m.ExpiresAt != nil {
			s += " until " + m.ExpiresAt.Format(time.RFC3339)
		}
		return s
	case "approved":
		return fmt.Sprintf("%s: deploy %s of %s approved by %s", m.Site, m.DeployID, what, m.ApprovedBy)
	case "rejected":
		return fmt.Sprintf("%s: deploy %s of %s rejected by %s", m.Site, m.DeployID, what, m.ApprovedBy)
	case "expired":
		return fmt.Sprintf("%s: the approval of deploy %s (%s) expired", m.Site, m.DeployID, what)
	case "rolled_back":
		return fmt.Sprintf("%s: rolled back to %s on %s by %s (deploy %s)", m.Site, what, m.Color, by, m.DeployID)
	case "superseded":
		return fmt.Sprintf("%s: deploy %s of %s superseded: %s", m.Site, m.DeployID, what, m.Error)
	}
	return fmt.Sprintf("%s: deploy %s of %s: %s", m.Site, m.DeployID, what, m.Event)
}

// Payload renders m in a format (deployer.NotifyWebhook, NotifySlack or
// NotifyDiscord) with mask applied to every string in it. It is always
// built with encoding/json: no value can break out of its field.
func Payload(kind string, m Message, mask func(string) string) ([]byte, error) {
	if mask != nil {
		m = m.masked(mask)
	}
	var v any
	switch kind {
	case deployer.NotifyWebhook, "":
		v = m
	case deployer.NotifySlack:
		v = slackPayload(m)
	case deployer.NotifyDiscord:
		v = discordPayload(m)
	default:
		return nil, fmt.Errorf("unknown notification kind %q", kind)
	}
	b, err := json.Marshal(v)
	if err != nil || mask == nil {
		return b, err
	}
	// Mask the strings of the rendered document too, so that no text a
	// format composes can carry a secret the fields did not show whole.
	var doc any
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, err
	}
	return json.Marshal(maskAll(doc, mask))
}

// masked applies mask to every string field.
func (m Message) masked(mask func(string) string) Message {
	for _, p := range []*string{&m.Event, &m.Site, &m.DeployID, &m.Commit, &m.ShortCommit, &m.Ref,
		&m.Color, &m.State, &m.User, &m.ApprovedBy, &m.Error, &m.ApproveURL, &m.Text} {
		*p = mask(*p)
	}
	return m
}

func maskAll(v any, mask func(string) string) any {
	switch t := v.(type) {
	case string:
		return mask(t)
	case []any:
		for i := range t {
			t[i] = maskAll(t[i], mask)
		}
	case map[string]any:
		for k := range t {
			t[k] = maskAll(t[k], mask)
		}
	}
	return v
}

// color is an embed colour per event.
func color(event string) int {
	switch event {
	case "live", "approved":
		return 0x2eb67d
	case "failed", "expired", "rejected":
		return 0xe01e5a
	case "pending_approval":
		return 0xecb22e
	case "rolled_back":
		return 0x8e44ad
	}
	return 0x36c5f0
}

type slackText struct {
	Type  string `json:"type"`
	Text  string `json:"text"`
	Emoji bool   `json:"emoji,omitempty"`
}

type slackElement struct {
	Type  string     `json:"type"`
	Text  *slackText `json:"text,omitempty"`
	URL   string     `json:"url,omitempty"`
	Style string     `json:"style,omitempty"`
}

type slackBlock struct {
	Type     string         `json:"type"`
	Text     *slackText     `json:"text,omitempty"`
	Elements []slackElement `json:"elements,omitempty"`
	Fields   []slackText    `json:"fields,omitempty"`
}

type slackMessage struct {
	Text   string       `json:"text"`
	Blocks []slackBlock `json:"blocks"`
}

// slackEscape escapes the three characters Slack's mrkdwn treats as
// control characters, so that a value cannot form a link or a mention.
func slackEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

// slackPayload is a Slack incoming-webhook message: a fallback text and
// Block Kit blocks, with a button to the approval page when there is one.
func slackPayload(m Message) slackMessage {
	const maxSection = 3000 // Slack's limit for a section's text
	text := slackEscape(m.Text)
	if rest, ok := strings.CutPrefix(m.Text, m.Site+": "); ok {
		text = "*" + slackEscape(m.Site) + "*: " + slackEscape(rest)
	}
	blocks := []slackBlock{{Type: "section", Text: &slackText{Type: "mrkdwn", Text: clip(text, maxSection)}}}
	var fields []slackText
	add := func(name, value string) {
		if value != "" {
			fields = append(fields, slackText{Type: "mrkdwn", Text: clip("*"+name+"*\n"+slackEscape(value), 2000)})
		}
	}
	add("Commit", m.ShortCommit)
	add("Ref", strings.TrimPrefix(m.Ref, "refs/heads/"))
	add("Deploy", m.DeployID)
	add("By", m.User)
	if m.ExpiresAt != nil {
		add("Expires", m.ExpiresAt.Format(time.RFC3339))
	}
	if len(fields) > 0 {
		blocks = append(blocks, slackBlock{Type: "section", Fields: fields})
	}
	if m.ApproveURL != "" {
		blocks = append(blocks, slackBlock{Type: "actions", Elements: []slackElement{{
			Type: "button", Text: &slackText{Type: "plain_text", Text: "Review and approve"},
			URL: m.ApproveURL, Style: "primary",
		}}})
	}
	return slackMessage{Text: clip(m.Text, maxSection), Blocks: blocks}
}

type discordField struct {
	Name   string `json:"name"`
	Value  string `json:"value"`
	Inline bool   `json:"inline"`
}

type discordEmbed struct {
	Title       string         `json:"title"`
	Description string         `json:"description,omitempty"`
	URL         string         `json:"url,omitempty"`
	Color       int            `json:"color"`
	Fields      []discordField `json:"fields,omitempty"`
	Timestamp   string         `json:"timestamp"`
}

type discordMentions struct {
	Parse []string `json:"parse"`
}

type discordMessage struct {
	Content  string         `json:"content"`
	Username string         `json:"username"`
	Embeds   []discordEmbed `json:"embeds"`
	// AllowedMentions is empty: nothing in a deploy (a commit message, an
	// error) can ping @everyone.
	AllowedMentions discordMentions `json:"allowed_mentions"`
}

// discordPayload is a Discord webhook message: content and one embed,
// linking to the approval page when there is one.
func discordPayload(m Message) discordMessage {
	content := m.Text
	if m.ApproveURL != "" {
		content += "\nReview and approve: " + m.ApproveURL
	}
	var fields []discordField
	add := func(name, value string, inline bool) {
		if value != "" {
			fields = append(fields, discordField{Name: name, Value: clip(value, 1024), Inline: inline})
		}
	}
	add("Commit", m.ShortCommit, true)
	add("Ref", strings.TrimPrefix(m.Ref, "refs/heads/"), true)
	add("Colour", m.Color, true)
	add("By", m.User, true)
	add("Approved by", m.ApprovedBy, true)
	if m.ExpiresAt != nil {
		add("Expires", m.ExpiresAt.Format(time.RFC3339), true)
	}
	add("Error", m.Error, false)
	return discordMessage{
		Content:  clip(content, 2000),
		Username: "eeveon",
		Embeds: []discordEmbed{{
			Title: clip(m.Site+": "+m.Event+" ("+m.DeployID+")", 256), Description: clip(m.Text, 4096),
			URL: m.ApproveURL, Color: color(m.Event), Fields: fields, Timestamp: m.Time.Format(time.RFC3339),
		}},
		AllowedMentions: discordMentions{Parse: []string{}},
	}
}

// clip shortens s to at most n bytes on a rune boundary, marking the cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
