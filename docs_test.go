package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode"
)

// TestDocLinks checks that every relative link in README.md and docs/*.md
// names a file or folder of the repository, and that every #anchor names a
// heading of the page it points at, by GitHub's rules for heading ids. It
// needs no Docker.
func TestDocLinks(t *testing.T) {
	pages, err := filepath.Glob("docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	pages = append([]string{"README.md"}, pages...)
	anchors := map[string]map[string]bool{} // page -> heading ids
	anchorsOf := func(page string) (map[string]bool, error) {
		if a, ok := anchors[page]; ok {
			return a, nil
		}
		text, err := os.ReadFile(page)
		if err != nil {
			return nil, err
		}
		a := headingIDs(string(text))
		anchors[page] = a
		return a, nil
	}
	links := 0
	for _, page := range pages {
		text, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range markdownLinks(string(text)) {
			target := l.target
			if isExternal(target) {
				continue
			}
			links++
			path, anchor, _ := strings.Cut(target, "#")
			resolved := page
			if path != "" {
				resolved = filepath.Join(filepath.Dir(page), filepath.FromSlash(path))
				if _, err := os.Stat(resolved); err != nil {
					t.Errorf("%s:%d: link %q: %s does not exist", page, l.line, target, resolved)
					continue
				}
			}
			if anchor == "" {
				continue
			}
			if !strings.HasSuffix(resolved, ".md") {
				t.Errorf("%s:%d: link %q: an anchor into %s, which is not a Markdown page", page, l.line, target, resolved)
				continue
			}
			ids, err := anchorsOf(resolved)
			if err != nil {
				t.Errorf("%s:%d: link %q: %v", page, l.line, target, err)
				continue
			}
			if !ids[anchor] {
				t.Errorf("%s:%d: link %q: %s has no heading with the id %q", page, l.line, target, resolved, anchor)
			}
		}
	}
	if links == 0 {
		t.Fatal("no relative links found: the parser is broken")
	}
	t.Logf("%d relative links checked in %d pages", links, len(pages))
}

// TestHeadingSlugs pins the heading ids to GitHub's rules.
func TestHeadingSlugs(t *testing.T) {
	for heading, want := range map[string]string{
		"What a stranger, a client and a function can cost": "what-a-stranger-a-client-and-a-function-can-cost",
		"CloudEvents and trace context":                     "cloudevents-and-trace-context",
		"The console's live view":                           "the-consoles-live-view",
		"`main.go` and [serve](x.md)":                       "maingo-and-serve",
		"snake_case and dash-case":                          "snake_case-and-dash-case",
		"Modes: cold, hot and lambda":                       "modes-cold-hot-and-lambda",
	} {
		if got := slug(heading); got != want {
			t.Errorf("slug(%q) = %q, want %q", heading, got, want)
		}
	}
	ids := headingIDs("# A\n## A\n```\n# not a heading\n```\n### A\n")
	for _, id := range []string{"a", "a-1", "a-2"} {
		if !ids[id] {
			t.Errorf("repeated headings: no id %q in %v", id, ids)
		}
	}
	if ids["not-a-heading"] {
		t.Error("a line in a code block counted as a heading")
	}
}

type docLink struct {
	target string
	line   int
}

var (
	// [text](target) and ![alt](target), the target without spaces, an
	// optional title after it.
	inlineLink = regexp.MustCompile(`!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^\s()<>]+)>?(?:\s+"[^"]*")?\s*\)`)
	inlineCode = regexp.MustCompile("`+[^`]*`+")
	heading    = regexp.MustCompile(`^#{1,6}\s+(.*?)\s*#*\s*$`)
	mdLinkText = regexp.MustCompile(`!?\[([^\]]*)\]\([^)]*\)`)
)

// markdownLinks returns the links of a page outside code blocks and code
// spans.
func markdownLinks(text string) []docLink {
	var links []docLink
	for i, line := range lines(text) {
		line = inlineCode.ReplaceAllString(line, "")
		for _, m := range inlineLink.FindAllStringSubmatch(line, -1) {
			links = append(links, docLink{target: m[1], line: i + 1})
		}
	}
	return links
}

// lines returns a page's lines with those inside fenced code blocks blanked,
// so line numbers stay right.
func lines(text string) []string {
	all := strings.Split(text, "\n")
	fence := ""
	for i, line := range all {
		trimmed := strings.TrimSpace(line)
		if fence != "" {
			if strings.HasPrefix(trimmed, fence) {
				fence = ""
			}
			all[i] = ""
			continue
		}
		if strings.HasPrefix(trimmed, "```") || strings.HasPrefix(trimmed, "~~~") {
			fence = trimmed[:3]
			all[i] = ""
		}
	}
	return all
}

// headingIDs returns the ids GitHub gives a page's headings: the slug, and
// for a repeated slug the slug with -1, -2, ... appended.
func headingIDs(text string) map[string]bool {
	ids := map[string]bool{}
	seen := map[string]int{}
	for _, line := range lines(text) {
		m := heading.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		s := slug(m[1])
		id := s
		if n := seen[s]; n > 0 {
			id = fmt.Sprintf("%s-%d", s, n)
		}
		seen[s]++
		ids[id] = true
	}
	return ids
}

// slug is GitHub's heading id: the heading's text (links as their text, code
// spans without their backticks) in lower case, spaces as dashes, and every
// character but letters, digits, dashes and underscores removed.
func slug(h string) string {
	h = mdLinkText.ReplaceAllString(h, "$1")
	var b strings.Builder
	for _, r := range strings.ToLower(h) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

func isExternal(target string) bool {
	if i := strings.Index(target, ":"); i > 0 && !strings.ContainsAny(target[:i], "/#.") {
		return true // a scheme: https:, mailto:, ...
	}
	return strings.HasPrefix(target, "//")
}
