package jsonmembers_test

import (
	"reflect"
	"slices"
	"testing"

	"github.com/minilambda/minilambda/internal/jsonmembers"
)

type inner struct {
	Deep string `json:"deep"`
}

type outer struct {
	inner
	Named   int    `json:"named,omitempty"`
	Skipped string `json:"-"`
	Plain   bool
	hidden  bool
}

func TestOf(t *testing.T) {
	_ = outer{}.hidden
	want := []string{"deep", "named", "Plain"}
	for range 2 { // the second from the cache
		if got := jsonmembers.Of(reflect.TypeOf(outer{})); !slices.Equal(got, want) {
			t.Errorf("Of(outer) = %v, want %v", got, want)
		}
	}
}
