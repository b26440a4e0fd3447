package function

import (
	"maps"
	"strings"
	"unicode/utf8"
)

// Tags: key-value labels a user puts on a function, as Lambda's
// TagResource. They are not settings: a change of them runs nothing new.
const (
	MaxTags        = 50
	MaxTagKeyLen   = 128
	MaxTagValueLen = 256
)

// ChangeTags returns tags with set added (replacing values) and the keys
// of remove taken away, or what is wrong with the result; tags itself is
// not changed. Errors wrap ErrInvalid.
func ChangeTags(tags, set map[string]string, remove []string) (map[string]string, error) {
	out := maps.Clone(tags)
	if out == nil {
		out = map[string]string{}
	}
	for k, v := range set {
		switch {
		case k == "" || utf8.RuneCountInString(k) > MaxTagKeyLen || !utf8.ValidString(k):
			return nil, InvalidField("tags", "tag key %.40q must be 1 to %d characters of UTF-8", k, MaxTagKeyLen)
		case strings.HasPrefix(strings.ToLower(k), "aws:"):
			return nil, InvalidField("tags", "tag key %.40q: the aws: prefix is reserved", k)
		case utf8.RuneCountInString(v) > MaxTagValueLen || !utf8.ValidString(v):
			return nil, InvalidField("tags", "tag %.40q: its value must be at most %d characters of UTF-8", k, MaxTagValueLen)
		}
		out[k] = v
	}
	for _, k := range remove {
		delete(out, k)
	}
	if len(out) > MaxTags {
		return nil, InvalidField("tags", "a function may have at most %d tags; this would make %d", MaxTags, len(out))
	}
	return out, nil
}
