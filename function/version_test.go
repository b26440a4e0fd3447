package function_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/minilambda/minilambda/function"
)

func TestParseQualifier(t *testing.T) {
	for in, want := range map[string]function.Qualifier{
		"": {}, "$LATEST": {}, "1": {Version: 1}, "42": {Version: 42}, "prod": {Alias: "prod"}, "blue-2_x": {Alias: "blue-2_x"},
	} {
		if got, err := function.ParseQualifier(in); err != nil || got != want {
			t.Errorf("%q: %+v %v, want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"0", "007x/", "a:b", "99999999999999999999", "$latest", "has space"} {
		if q, err := function.ParseQualifier(in); !errors.Is(err, function.ErrInvalid) {
			t.Errorf("%q: %+v %v, want ErrInvalid", in, q, err)
		}
	}
	if s := (function.Qualifier{Version: 3}).String(); s != "3" {
		t.Errorf("String: %q", s)
	}
}

func TestAliasSpecCheck(t *testing.T) {
	for name, a := range map[string]function.AliasSpec{
		"latest":       {FunctionVersion: "$LATEST"},
		"version":      {FunctionVersion: "2"},
		"weighted":     {FunctionVersion: "2", Weights: map[string]float64{"3": 0.1}},
		"weighted all": {FunctionVersion: "2", Weights: map[string]float64{"3": 1}},
	} {
		if err := a.Check(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	for name, a := range map[string]function.AliasSpec{
		"empty":           {},
		"zero":            {FunctionVersion: "0"},
		"two extra":       {FunctionVersion: "1", Weights: map[string]float64{"2": 0.1, "3": 0.1}},
		"own version":     {FunctionVersion: "1", Weights: map[string]float64{"1": 0.1}},
		"latest weighted": {FunctionVersion: "$LATEST", Weights: map[string]float64{"1": 0.1}},
		"weight over 1":   {FunctionVersion: "1", Weights: map[string]float64{"2": 1.5}},
		"weight negative": {FunctionVersion: "1", Weights: map[string]float64{"2": -0.1}},
		"not a version":   {FunctionVersion: "1", Weights: map[string]float64{"x": 0.1}},
		"long":            {FunctionVersion: "1", Description: string(make([]byte, 300))},
	} {
		if err := a.Check(); !errors.Is(err, function.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	a := function.AliasSpec{FunctionVersion: "1", Weights: map[string]float64{"2": 0.3}}
	if a.Pick(0.29) != "2" || a.Pick(0.3) != "1" || a.Pick(0.99) != "1" {
		t.Errorf("Pick: %q %q %q", a.Pick(0.29), a.Pick(0.3), a.Pick(0.99))
	}
	for _, name := range []string{"", "123", "a.b", string(make([]byte, 129))} {
		if function.CheckAliasName(name) == nil {
			t.Errorf("alias name %q accepted", name)
		}
	}
}

func TestPublishAllows(t *testing.T) {
	const id = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	for _, c := range []struct {
		digest string
		want   bool
	}{
		{"", true}, {id, true}, {id[len("sha256:"):], true},
		{"sha256:" + id[len(id)-64:len(id)-1] + "0", false}, {"0123", false}, {"sha256:", false},
	} {
		if got := (function.Publish{ImageDigest: c.digest}).Allows(id); got != c.want {
			t.Errorf("ImageDigest %q allows %s: %v, want %v", c.digest, id, got, c.want)
		}
	}
	if err := (function.Publish{Description: strings.Repeat("d", function.MaxDescriptionLen+1)}).Check(); !errors.Is(err, function.ErrInvalid) {
		t.Errorf("a description too long: %v", err)
	}
}
