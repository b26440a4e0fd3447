package function

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// Latest is the qualifier of a function's current, mutable settings, as
// Lambda names it. Published versions are numbered from 1 and never
// change; an alias names one of them, or Latest.
const Latest = "$LATEST"

// Bounds of aliases and of a published version's description, as Lambda's.
const (
	MaxAliasLen       = 128
	MaxDescriptionLen = 256
)

// Qualifier is what an invocation names beside its function: nothing or
// Latest, a published version number, or an alias.
type Qualifier struct {
	Version int    // a published version; 0 with Alias empty is Latest
	Alias   string // an alias name, resolved to a version when invoked
}

// ParseQualifier reads a qualifier as an invocation gives it. A number
// names a published version (aliases are never all digits), "$LATEST" or
// "" the current settings, anything else an alias.
func ParseQualifier(s string) (Qualifier, error) {
	if s == "" || s == Latest {
		return Qualifier{}, nil
	}
	if isDigits(s) {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return Qualifier{}, invalid("version %q is not a published version number (1 or more)", s)
		}
		return Qualifier{Version: n}, nil
	}
	if err := CheckAliasName(s); err != nil {
		return Qualifier{}, invalid("qualifier: %v", err)
	}
	return Qualifier{Alias: s}, nil
}

// String is the qualifier as ParseQualifier reads it.
func (q Qualifier) String() string {
	switch {
	case q.Alias != "":
		return q.Alias
	case q.Version > 0:
		return strconv.Itoa(q.Version)
	}
	return Latest
}

func isDigits(s string) bool {
	return s != "" && strings.Trim(s, "0123456789") == ""
}

// CheckAliasName says what is wrong with an alias name, or returns nil:
// 1 to 128 of letters, digits, '-' and '_', not all digits (those are
// version numbers), as Lambda requires.
func CheckAliasName(name string) error {
	if name == "" {
		return fmt.Errorf("alias name is empty")
	}
	if len(name) > MaxAliasLen {
		return fmt.Errorf("alias name is %d characters; at most %d", len(name), MaxAliasLen)
	}
	for _, r := range name {
		if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '_' || r == '-') {
			return fmt.Errorf("alias name %q has %q: use only letters, digits, '_' and '-'", name, r)
		}
	}
	if isDigits(name) {
		return fmt.Errorf("alias name %q is all digits, which names a version", name)
	}
	return nil
}

// CheckDescription says what is wrong with a version's or an alias's
// description, or returns nil.
func CheckDescription(d string) error {
	if len(d) > MaxDescriptionLen {
		return fieldErr("description", "description is %d bytes; at most %d", len(d), MaxDescriptionLen)
	}
	return nil
}

// Publish is a request to publish a function's current settings as its
// next version.
type Publish struct {
	// Description is the version's own.
	Description string
	// ImageDigest, when set, is the ID the function's image must have for
	// the publish to happen (Lambda's CodeSha256 precondition): the image's
	// "sha256:" digest, or its hex alone. Another image publishes nothing.
	ImageDigest string
}

// Check says what is wrong with a publish request, as a 400.
func (p Publish) Check() error {
	if err := CheckDescription(p.Description); err != nil {
		return invalidErr(err)
	}
	return nil
}

// Allows reports whether the request lets an image of ID digest be
// published: when it names none, or names that one.
func (p Publish) Allows(digest string) bool {
	return p.ImageDigest == "" || strings.TrimPrefix(p.ImageDigest, "sha256:") == strings.TrimPrefix(digest, "sha256:")
}

// AllowsCode reports whether the request lets a zip package whose
// archive's base64 SHA-256 is sha be published: when it names none, or
// names that one.
func (p Publish) AllowsCode(sha string) bool { return p.ImageDigest == "" || p.ImageDigest == sha }

// AliasSpec is what a user sets on an alias: the version it names, and at
// most one other version that takes a share of its invocations.
type AliasSpec struct {
	// FunctionVersion is a published version number, or Latest.
	FunctionVersion string `json:"function_version"`
	// Weights gives one other published version the share (0 to 1) of the
	// alias's invocations it runs; FunctionVersion runs the rest.
	Weights     map[string]float64 `json:"additional_version_weights,omitempty"`
	Description string             `json:"description,omitempty"`
}

// Check says what is wrong with an alias's settings, as a 400.
func (a AliasSpec) Check() error {
	if a.FunctionVersion != Latest {
		if n, err := strconv.Atoi(a.FunctionVersion); err != nil || n < 1 {
			return InvalidField("function_version", "function_version %q: a published version number or %s", a.FunctionVersion, Latest)
		}
	}
	if err := CheckDescription(a.Description); err != nil {
		return invalidErr(err)
	}
	if len(a.Weights) > 1 {
		return InvalidField("additional_version_weights", "additional_version_weights: at most one other version")
	}
	for _, v := range slices.Sorted(maps.Keys(a.Weights)) {
		w := a.Weights[v]
		if n, err := strconv.Atoi(v); err != nil || n < 1 {
			return InvalidField("additional_version_weights", "additional_version_weights: %q is not a published version number", v)
		}
		if v == a.FunctionVersion {
			return InvalidField("additional_version_weights", "additional_version_weights: version %s is the alias's own function_version", v)
		}
		if a.FunctionVersion == Latest {
			return InvalidField("additional_version_weights", "additional_version_weights: an alias of %s cannot route to another version", Latest)
		}
		if !(w >= 0 && w <= 1) {
			return InvalidField("additional_version_weights", "additional_version_weights: weight %v of version %s must be between 0 and 1", w, v)
		}
	}
	return nil
}

// Pick returns the version an invocation through the alias runs, given r
// uniform in [0, 1).
func (a AliasSpec) Pick(r float64) string {
	for v, w := range a.Weights {
		if r < w {
			return v
		}
	}
	return a.FunctionVersion
}
