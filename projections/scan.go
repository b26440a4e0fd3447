package projections

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
)

// Replaying a million events spent most of its time in encoding/json,
// which validates every byte before it decodes and walks every field by
// reflection. The projector needs a few scalar fields of each payload, so
// it reads them with this small scanner instead: it walks one object,
// hands over scalar members and skips nested ones (such as the invocation's
// input) by matching brackets. Payloads were checked as valid JSON when
// they were appended, and the hash chain guards them since.

var errScan = errors.New("malformed payload")

type jsonValue struct {
	raw []byte // the value's bytes, quotes included for strings
}

// scanObject calls fn for each member of the object in data.
func scanObject(data []byte, fn func(key []byte, v jsonValue) error) error {
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return errScan
	}
	i = skipSpace(data, i+1)
	if i < len(data) && data[i] == '}' {
		return trailing(data, i+1)
	}
	for {
		if i >= len(data) || data[i] != '"' {
			return errScan
		}
		end, err := skipString(data, i)
		if err != nil {
			return err
		}
		key := data[i+1 : end-1]
		if bytes.IndexByte(key, '\\') >= 0 {
			var k string
			if err := json.Unmarshal(data[i:end], &k); err != nil {
				return errScan
			}
			key = []byte(k)
		}
		i = skipSpace(data, end)
		if i >= len(data) || data[i] != ':' {
			return errScan
		}
		i = skipSpace(data, i+1)
		vend, err := skipValue(data, i)
		if err != nil {
			return err
		}
		if err := fn(key, jsonValue{raw: data[i:vend]}); err != nil {
			return err
		}
		i = skipSpace(data, vend)
		if i >= len(data) {
			return errScan
		}
		switch data[i] {
		case ',':
			i = skipSpace(data, i+1)
		case '}':
			return trailing(data, i+1)
		default:
			return errScan
		}
	}
}

func trailing(data []byte, i int) error {
	if skipSpace(data, i) != len(data) {
		return errScan
	}
	return nil
}

func skipSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index after the string starting at data[i].
func skipString(data []byte, i int) (int, error) {
	for j := i + 1; j < len(data); j++ {
		switch data[j] {
		case '\\':
			j++
		case '"':
			return j + 1, nil
		}
	}
	return 0, errScan
}

// skipValue returns the index after the value starting at data[i].
func skipValue(data []byte, i int) (int, error) {
	if i >= len(data) {
		return 0, errScan
	}
	switch c := data[i]; {
	case c == '"':
		return skipString(data, i)
	case c == '{' || c == '[':
		depth := 0
		for j := i; j < len(data); j++ {
			switch data[j] {
			case '"':
				end, err := skipString(data, j)
				if err != nil {
					return 0, err
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1, nil
				}
			}
		}
		return 0, errScan
	default:
		j := i
		for j < len(data) && data[j] != ',' && data[j] != '}' && data[j] != ']' &&
			data[j] != ' ' && data[j] != '\n' && data[j] != '\t' && data[j] != '\r' {
			j++
		}
		if j == i {
			return 0, errScan
		}
		return j, nil
	}
}

func (v jsonValue) String() (string, error) {
	r := v.raw
	if len(r) < 2 || r[0] != '"' || r[len(r)-1] != '"' {
		if string(r) == "null" {
			return "", nil
		}
		return "", fmt.Errorf("%w: want a string, got %.20q", errScan, r)
	}
	for _, c := range r[1 : len(r)-1] {
		if c == '\\' || c < 0x20 || c >= 0x80 {
			// Escapes and non-ASCII: let encoding/json get them exactly right.
			var s string
			if err := json.Unmarshal(r, &s); err != nil {
				return "", fmt.Errorf("%w: %v", errScan, err)
			}
			return s, nil
		}
	}
	return string(r[1 : len(r)-1]), nil
}

func (v jsonValue) Int() (int64, error) {
	if string(v.raw) == "null" {
		return 0, nil
	}
	n, err := strconv.ParseInt(string(v.raw), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: want an integer, got %.20q", errScan, v.raw)
	}
	return n, nil
}

func (v jsonValue) Bool() (bool, error) {
	switch string(v.raw) {
	case "true":
		return true, nil
	case "false", "null":
		return false, nil
	}
	return false, fmt.Errorf("%w: want a boolean, got %.20q", errScan, v.raw)
}

func (v jsonValue) isNull() bool { return string(v.raw) == "null" }
