// Package names holds the rules for the names users give functions, shared
// by the API's validation and migrate's import.
package names

import "fmt"

// MaxLen is the longest function name.
const MaxLen = 64

// Check returns an error saying what is wrong with a function name, or nil.
// Names are 1 to 64 of A-Z a-z 0-9 _ . -
func Check(name string) error {
	if name == "" {
		return fmt.Errorf("name is empty")
	}
	if len(name) > MaxLen {
		return fmt.Errorf("name %.20q... is %d characters; at most %d", name, len(name), MaxLen)
	}
	for _, r := range name {
		if !ok(r) {
			return fmt.Errorf("name %q has %q: use only letters, digits, '_', '.' and '-'", name, r)
		}
	}
	return nil
}

func ok(r rune) bool {
	return 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '_' || r == '.' || r == '-'
}
