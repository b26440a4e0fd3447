package function_test

import (
	"errors"
	"testing"

	"github.com/minilambda/minilambda/function"
)

func TestParseDestination(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want function.Destination
		bad  bool
	}{
		{in: "sink", want: function.Destination{Function: "sink"}},
		{in: "sink:live", want: function.Destination{Function: "sink", Qualifier: "live"}},
		{in: "arn:aws:lambda:us-east-1:000000000000:function:sink:3", want: function.Destination{Function: "sink", Qualifier: "3"}},
		{in: "https://hooks.example.com/x?y=1", want: function.Destination{URL: "https://hooks.example.com/x?y=1"}},
		{in: "arn:aws:sqs:us-east-1:000000000000:queue", bad: true},
		{in: "a:b:c", bad: true},
		{in: "sink:", bad: true},
		{in: "ftp://example.com/x", bad: true},
		{in: "http://", bad: true},
		{in: "", bad: true},
	} {
		got, err := function.ParseDestination("destinations.on_failure", tc.in)
		var fe *function.FieldError
		switch {
		case tc.bad && (err == nil || !errors.As(err, &fe) || fe.Field != "destinations.on_failure"):
			t.Errorf("%q: %+v, %v; want an error about destinations.on_failure", tc.in, got, err)
		case !tc.bad && (err != nil || got != tc.want):
			t.Errorf("%q: %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}

func TestNormalizeAsyncSettings(t *testing.T) {
	base := function.Spec{Name: "f", Image: "img:1"}
	for _, tc := range []struct {
		name  string
		set   func(*function.Spec)
		field string
	}{
		{"an age under a minute", func(s *function.Spec) { s.MaxEventAge = 59 }, "max_event_age"},
		{"an age over six hours", func(s *function.Spec) { s.MaxEventAge = 21601 }, "max_event_age"},
		{"a destination that is neither", func(s *function.Spec) {
			s.Destinations = &function.Destinations{OnSuccess: "arn:aws:sns:us-east-1:0:topic"}
		}, "destinations.on_success"},
	} {
		s := base
		tc.set(&s)
		_, err := function.Normalize(s)
		var fe *function.FieldError
		if !errors.Is(err, function.ErrInvalid) || !errors.As(err, &fe) || fe.Field != tc.field {
			t.Errorf("%s: %v, want an error about %s", tc.name, err, tc.field)
		}
	}
	s := base
	s.MaxEventAge, s.Destinations = 600, &function.Destinations{}
	got, err := function.Normalize(s)
	if err != nil || got.MaxEventAge != 600 || got.Destinations != nil {
		t.Errorf("an age and no destinations: %+v, %v; want the age kept and the empty destinations gone", got, err)
	}
}
