package secrets

import (
	"bytes"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// tricky holds values that need every quoting rule.
var tricky = map[string]string{
	"PLAIN":       "abc-DEF_0.9/x:y@z+1",
	"EMPTY":       "",
	"NEWLINES":    "line1\nline2\r\nline3\n",
	"EQUALS":      "a=b==c=",
	"DQUOTE":      `say "hi"`,
	"SQUOTE":      "it's 'quoted'",
	"DOLLAR":      "$HOME ${PATH} $(id) $",
	"BACKSLASH":   `C:\path\to\ \n not a newline \\`,
	"UNICODE":     "päss wörd ✓ 日本 \u2028",
	"SPACES":      "  leading and trailing  ",
	"TABS":        "\tx\t",
	"HASH":        "value # not a comment",
	"ONLY_HASH":   "#",
	"ONLY_QUOTE":  `"`,
	"INVALID_UTF": "\xff\xfe",
	"PEM":         "-----BEGIN KEY-----\nMIIBxx+/=\n-----END KEY-----\n",
	"EXPORT_LIKE": "export X=1",
}

func TestImportExportRoundTrip(t *testing.T) {
	s, _ := newStore(t)
	for k, v := range tricky {
		if err := s.Set("src", k, v); err != nil {
			t.Fatalf("Set %s: %v", k, err)
		}
	}
	out, err := s.Export("src")
	if err != nil {
		t.Fatal(err)
	}
	n, err := s.Import("dst", out, true)
	if err != nil {
		t.Fatalf("Import of Export: %v", err)
	}
	if n != len(tricky) {
		t.Errorf("Import n = %d, want %d", n, len(tricky))
	}
	if got := mustGet(t, s, "dst"); !maps.Equal(got, tricky) {
		t.Fatalf("round trip changed values:\n got %s\nwant %s", fpMap(got), fpMap(tricky))
	}
	// Exported values stay on one line each, and bare values are bare.
	if lines := bytes.Count(out, []byte("\n")); lines != len(tricky) {
		t.Errorf("Export has %d lines for %d secrets", lines, len(tricky))
	}
	if !bytes.Contains(out, []byte("PLAIN=abc-DEF_0.9/x:y@z+1\n")) || !bytes.Contains(out, []byte("EMPTY=\n")) {
		t.Errorf("bare values were quoted")
	}
	if !bytes.Contains(out, []byte(`DOLLAR="\$HOME \${PATH} \$(id) \$"`)) {
		t.Errorf("$ is not escaped in double quotes")
	}
}

func TestImportMergeAndReplace(t *testing.T) {
	s, _ := newStore(t)
	if err := s.Set("hello", "KEEP", "1111"); err != nil {
		t.Fatal(err)
	}
	if err := s.Set("hello", "CHANGE", "old"); err != nil {
		t.Fatal(err)
	}
	n, err := s.Import("hello", []byte("CHANGE=new\nADD=added\n"), false)
	if err != nil || n != 2 {
		t.Fatalf("merge Import = %d, %v", n, err)
	}
	want := map[string]string{"KEEP": "1111", "CHANGE": "new", "ADD": "added"}
	if got := mustGet(t, s, "hello"); !maps.Equal(got, want) {
		t.Fatalf("after merge: %s, want %s", fpMap(got), fpMap(want))
	}
	n, err = s.Import("hello", []byte("ONLY=this\n"), true)
	if err != nil || n != 1 {
		t.Fatalf("replace Import = %d, %v", n, err)
	}
	want = map[string]string{"ONLY": "this"}
	if got := mustGet(t, s, "hello"); !maps.Equal(got, want) {
		t.Fatalf("after replace: %s, want %s", fpMap(got), fpMap(want))
	}
	if _, err := s.Import("hello", []byte("# nothing\n"), true); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, s, "hello"); len(got) != 0 {
		t.Fatalf("replace with an empty file left %s", fpMap(got))
	}
}

func TestParseDotenvSyntax(t *testing.T) {
	in := "# a comment\n" +
		"\n" +
		"   \t\n" +
		"PLAIN=value\n" +
		"  TRIMMED =   spaced value  \r\n" +
		"export EXPORTED=yes\n" +
		"export\tTABBED=tab\n" +
		"SINGLE='lit $X \\n \"q\"'  # trailing comment\n" +
		"DOUBLE=\"esc \\\\ \\\" \\n \\r \\t \\$ end\"\n" +
		"MULTI=\"first\nsecond\"\n" +
		"MULTI_SINGLE='a\nb'\n" +
		"EMPTY=\n" +
		"EMPTY_Q=\"\"\n" +
		"HASH=a#b # c\n" +
		"DUP=first\n" +
		"DUP=second\n" +
		"LAST=no newline at end"
	want := map[string]string{
		"PLAIN":        "value",
		"TRIMMED":      "spaced value",
		"EXPORTED":     "yes",
		"TABBED":       "tab",
		"SINGLE":       `lit $X \n "q"`,
		"DOUBLE":       "esc \\ \" \n \r \t $ end",
		"MULTI":        "first\nsecond",
		"MULTI_SINGLE": "a\nb",
		"EMPTY":        "",
		"EMPTY_Q":      "",
		"HASH":         "a#b # c",
		"DUP":          "second",
		"LAST":         "no newline at end",
	}
	got, err := ParseDotenv([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(got, want) {
		for k := range want {
			if got[k] != want[k] {
				t.Errorf("%s = %s, want %s", k, fp(got[k]), fp(want[k]))
			}
		}
		for k := range got {
			if _, ok := want[k]; !ok {
				t.Errorf("unexpected %s", k)
			}
		}
	}
}

func TestImportMalformed(t *testing.T) {
	const secret = "s3cr3t-Vb7Q"
	for _, tc := range []struct {
		name, in, line string
	}{
		{"no equals", "A=1\nJUST_A_NAME\n", "line 2:"},
		{"bad name", "A=1\n\n# c\nlower=1\n", "line 4:"},
		{"empty name", "=" + secret + "\n", "line 1:"},
		{"unterminated double", "A=1\nB=\"" + secret + "\nC=3\n", "line 2:"},
		{"unterminated single", "A='" + secret, "line 1:"},
		{"text after quote", "A=\"x\" " + secret + "\n", "line 1:"},
		{"bad escape", "A=1\nB=\"" + secret + "\\q\"\n", "line 2:"},
		{"after multi-line", "A=\"x\ny\"\nB=2\nNOPE\n", "line 4:"},
		{"NUL in value", "A=1\nB=a\x00b\n", "line 2:"},
		{"too long", "A=" + strings.Repeat("x", 64<<10+1) + "\n", "line 1:"},
		{"export only", "export\n", "line 1:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, dir := newStore(t)
			if err := s.Set("hello", "KEEP", "kept"); err != nil {
				t.Fatal(err)
			}
			file := filepath.Join(dir, "secrets", "hello.age")
			before, _ := os.ReadFile(file)
			for _, replace := range []bool{false, true} {
				n, err := s.Import("hello", []byte(tc.in), replace)
				if err == nil {
					t.Fatalf("Import (replace=%v) succeeded with n=%d", replace, n)
				}
				if !strings.Contains(err.Error(), tc.line) {
					t.Errorf("error %q does not name %q", err, tc.line)
				}
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error quotes the value")
				}
			}
			after, _ := os.ReadFile(file)
			if !bytes.Equal(before, after) {
				t.Errorf("a failed Import rewrote the store")
			}
			if got := mustGet(t, s, "hello"); !maps.Equal(got, map[string]string{"KEEP": "kept"}) {
				t.Errorf("after a failed Import: %s", fpMap(got))
			}
		})
	}
}

func TestFormatDotenvSorted(t *testing.T) {
	got := string(FormatDotenv(map[string]string{"B": "2", "A": "1 1", "C": ""}))
	want := "A=\"1 1\"\nB=2\nC=\n"
	if got != want {
		t.Errorf("FormatDotenv = %q, want %q", got, want)
	}
}

// FuzzDotenv: the parser takes files from users. It must not panic, and
// whatever it accepts must survive FormatDotenv and ParseDotenv unchanged.
func FuzzDotenv(f *testing.F) {
	f.Add([]byte("A=1\nexport B='x'\nC=\"a\\nb\"\n# c\n"))
	f.Add(FormatDotenv(tricky))
	f.Fuzz(func(t *testing.T, in []byte) {
		m, err := ParseDotenv(in)
		if err != nil {
			return
		}
		for k, v := range m {
			if ValidKey(k) != nil || ValidValue(v) != nil {
				t.Fatalf("parser accepted an invalid entry %s", k)
			}
		}
		again, err := ParseDotenv(FormatDotenv(m))
		if err != nil {
			t.Fatalf("formatted output does not parse: %v", err)
		}
		if !maps.Equal(m, again) {
			t.Fatalf("round trip changed %s into %s", fpMap(m), fpMap(again))
		}
	})
}
