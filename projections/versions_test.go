package projections_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/minilambda/minilambda/eventlog"
	"github.com/minilambda/minilambda/function"
	"github.com/minilambda/minilambda/projections"
)

// TestVersionsAndAliases feeds the projector published versions and
// aliases, and the sequences it must refuse; then resolves qualifiers and
// checks that a record keeps the version it ran through the stored form.
func TestVersionsAndAliases(t *testing.T) {
	l := openLog(t, "")
	v := projections.NewViews(l)
	spec := function.Spec{Name: "hello", Image: "hello:1", Timeout: 30}
	published := func(n, rev int, digest string) eventlog.Event {
		return mustEvent(t, projections.TypeVersionPublished, "F1", "", projections.VersionPublished{V: 1, Number: n, Revision: rev, Spec: spec, ImageDigest: digest})
	}
	alias := func(typ, name, version string, weights map[string]float64) eventlog.Event {
		return mustEvent(t, typ, "F1", "", projections.AliasSet{V: 1, Name: name, AliasSpec: function.AliasSpec{FunctionVersion: version, Weights: weights}})
	}
	appendAll(t, l,
		mustEvent(t, projections.TypeFunctionRegistered, "F1", "", projections.FunctionRegistered{V: 1, Spec: spec, CreatedAt: time.Now()}),
		published(1, 1, "sha256:aaa"),
		published(2, 1, "sha256:bbb"),
		alias(projections.TypeAliasCreated, "prod", "1", map[string]float64{"2": 0.25}),
	)
	for name, e := range map[string]eventlog.Event{
		"version skipped":        published(4, 1, "sha256:ccc"),
		"version again":          published(2, 1, "sha256:ccc"),
		"no digest":              published(3, 1, ""),
		"alias twice":            alias(projections.TypeAliasCreated, "prod", "1", nil),
		"alias of no version":    alias(projections.TypeAliasCreated, "next", "3", nil),
		"weight of no version":   alias(projections.TypeAliasCreated, "next", "1", map[string]float64{"7": 0.5}),
		"update unknown alias":   alias(projections.TypeAliasUpdated, "next", "1", nil),
		"delete unknown alias":   mustEvent(t, projections.TypeAliasDeleted, "F1", "", projections.AliasDeleted{V: 1, Name: "next"}),
		"version of no function": mustEvent(t, projections.TypeVersionPublished, "F9", "", projections.VersionPublished{V: 1, Number: 1, ImageDigest: "sha256:a"}),
	} {
		if _, err := l.Append(context.Background(), e); !errors.Is(err, projections.ErrInconsistent) {
			t.Errorf("%s: %v", name, err)
		}
	}
	vs, err := v.Versions("hello")
	if err != nil || len(vs) != 2 || vs[1].Number != 2 || vs[1].ImageDigest != "sha256:bbb" {
		t.Fatalf("versions: %v %+v", err, vs)
	}
	for _, c := range []struct {
		q        function.Qualifier
		r        float64
		image    string
		executed string
	}{
		{function.Qualifier{}, 0, "hello:1", ""},
		{function.Qualifier{Version: 1}, 0, "sha256:aaa", "1"},
		{function.Qualifier{Alias: "prod"}, 0.1, "sha256:bbb", "2"},
		{function.Qualifier{Alias: "prod"}, 0.9, "sha256:aaa", "1"},
	} {
		res, err := v.Resolve("hello", c.q, c.r)
		if err != nil || res.Image != c.image || res.Executed() != c.executed || res.Alias != c.q.Alias {
			t.Errorf("%+v at %v: %v %+v", c.q, c.r, err, res)
		}
		if c.executed != "" && res.Published == 0 {
			t.Errorf("%+v: a published version's function has no number", c.q)
		}
	}
	if _, err := v.Resolve("hello", function.Qualifier{Version: 3}, 0); !errors.Is(err, projections.ErrNotFound) {
		t.Errorf("version 3: %v", err)
	}

	// The record keeps the version and alias through the stored form; a
	// record that named neither ran $LATEST.
	queued := func(id, executed, alias string) eventlog.Event {
		e, err := projections.NewInvocationQueued("F1", id, projections.InvocationQueued{FunctionName: "hello", FunctionVersion: 1, ExecutedVersion: executed, Alias: alias})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	appendAll(t, l, queued("I1", "2", "prod"), queued("I2", "", ""))
	if inv, err := v.Invocation("I1"); err != nil || inv.ExecutedVersion != "2" || inv.Alias != "prod" {
		t.Errorf("qualified record: %v %+v", err, inv)
	}
	if inv, err := v.Invocation("I2"); err != nil || inv.ExecutedVersion != function.Latest || inv.Alias != "" {
		t.Errorf("unqualified record: %v %+v", err, inv)
	}

	// A deleted function takes its aliases with it.
	appendAll(t, l, mustEvent(t, projections.TypeFunctionDeleted, "F1", "", projections.FunctionDeleted{V: 1}))
	appendAll(t, l, mustEvent(t, projections.TypeFunctionRegistered, "F2", "", projections.FunctionRegistered{V: 1, Spec: spec, CreatedAt: time.Now()}))
	if as, err := v.Aliases("hello"); err != nil || len(as) != 0 {
		t.Errorf("aliases of a new function of the same name: %v %+v", err, as)
	}
}
