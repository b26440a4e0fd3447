package http

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/julienschmidt/httprouter"
	"github.com/minilambda/minilambda/function"
	"github.com/minilambda/minilambda/projections"
)

func TestLambdaName(t *testing.T) {
	for _, c := range []struct{ name, query, ref, qualifier string }{
		{"hello", "", "hello", ""},
		{"hello:3", "", "hello", "3"},
		{"hello", "Qualifier=live", "hello", "live"},
		{"hello:live", "Qualifier=live", "hello", "live"},
		{"arn:aws:lambda:us-east-1:000000000000:function:hello", "", "hello", ""},
		{"arn:aws:lambda:us-east-1:000000000000:function:hello:$LATEST", "", "hello", "$LATEST"},
		{"000000000000:function:hello:2", "", "hello", "2"},
	} {
		r := httptest.NewRequest("GET", "/x?"+c.query, nil)
		ref, q, err := lambdaName(r, httprouter.Params{{Key: "name", Value: c.name}})
		if err != nil || ref != c.ref || q != c.qualifier {
			t.Errorf("%s?%s: %q %q %v", c.name, c.query, ref, q, err)
		}
	}
	for _, c := range []struct{ name, query string }{
		{"hello:1", "Qualifier=2"}, {"a:b:c", ""}, {"arn:aws:lambda:r:1:function:a:b:c", ""}, {"bad/name", ""}, {"", ""},
	} {
		r := httptest.NewRequest("GET", "/x?"+c.query, nil)
		if _, _, err := lambdaName(r, httprouter.Params{{Key: "name", Value: c.name}}); err == nil {
			t.Errorf("%q?%s accepted", c.name, c.query)
		}
	}
}

func TestLambdaPage(t *testing.T) {
	items := []string{"a", "b", "c", "d", "e"}
	var got []string
	marker := ""
	for range 10 {
		r := httptest.NewRequest("GET", "/x?MaxItems=2&Marker="+marker, nil)
		page, next, err := lambdaPage(r, items, func(s string) string { return s })
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, page...)
		if next == "" {
			break
		}
		marker = next
	}
	if strings.Join(got, "") != "abcde" {
		t.Errorf("paged %v", got)
	}
	for _, q := range []string{"MaxItems=0", "MaxItems=x", "MaxItems=10001"} {
		if _, _, err := lambdaPage(httptest.NewRequest("GET", "/x?"+q, nil), items, func(s string) string { return s }); err == nil {
			t.Errorf("%s accepted", q)
		}
	}
}

func TestFunctionError(t *testing.T) {
	own := `{"errorMessage":"no luck","errorType":"Oops","stackTrace":[]}`
	for _, c := range []struct {
		inv  projections.Invocation
		want string
	}{
		{projections.Invocation{LambdaErrorType: "Oops", Result: own}, own},
		{projections.Invocation{ErrorType: function.ErrorTimeout, Error: "timed out after 3s"}, `{"errorMessage":"timed out after 3s","errorType":"Sandbox.Timedout"}`},
		{projections.Invocation{ErrorType: function.ErrorFunction, Error: "exit status 3"}, `{"errorMessage":"exit status 3","errorType":"Runtime.ExitError"}`},
		{projections.Invocation{LambdaErrorType: "Runtime.ExitError", Result: "null", Error: "exited"}, `{"errorMessage":"exited","errorType":"Runtime.ExitError"}`},
	} {
		if got := string(functionError(c.inv)); got != c.want {
			t.Errorf("%+v: %s, want %s", c.inv, got, c.want)
		}
	}
}
