package function_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/minilambda/minilambda/function"
)

func TestHTTPTriggerSettings(t *testing.T) {
	base := function.Spec{Name: "f", Image: "img"}
	spec := base
	spec.HTTPTrigger = &function.HTTPTrigger{}
	s, err := function.Normalize(spec)
	if err != nil || s.HTTPTrigger.Auth != "token" {
		t.Fatalf("default auth: %v %+v", err, s.HTTPTrigger)
	}
	spec.HTTPTrigger = &function.HTTPTrigger{Auth: "hmac", HMACSecret: "0123456789abcdef", HMACHeader: "x-signature"}
	if s, err = function.Normalize(spec); err != nil || s.HTTPTrigger.HMACHeader != "X-Signature" {
		t.Fatalf("hmac: %v %+v", err, s.HTTPTrigger)
	}
	if r := s.HTTPTrigger.Redacted(); r.HMACSecret != "" || s.HTTPTrigger.HMACSecret == "" {
		t.Errorf("redacted %+v, original %+v", r, s.HTTPTrigger)
	}
	for name, tr := range map[string]function.HTTPTrigger{
		"unknown auth":    {Auth: "basic"},
		"short secret":    {Auth: "hmac", HMACSecret: "short"},
		"secret for none": {Auth: "none", HMACSecret: "0123456789abcdef"},
		"bad header":      {Auth: "hmac", HMACSecret: "0123456789abcdef", HMACHeader: "X Sig"},
	} {
		spec.HTTPTrigger = &tr
		if _, err := function.Normalize(spec); !errors.Is(err, function.ErrInvalid) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// A patch without the secret keeps it; "off" removes the trigger.
	patched := function.Patch{HTTPTrigger: &function.HTTPTrigger{Auth: "hmac", Async: true}}.Apply(s)
	if patched.HTTPTrigger.HMACSecret != "0123456789abcdef" || !patched.HTTPTrigger.Async {
		t.Errorf("patched: %+v", patched.HTTPTrigger)
	}
	if off := (function.Patch{HTTPTrigger: &function.HTTPTrigger{Auth: "off"}}).Apply(s); off.HTTPTrigger != nil {
		t.Errorf("off: %+v", off.HTTPTrigger)
	}
}

func TestVerifyHMAC(t *testing.T) {
	tr := &function.HTTPTrigger{Auth: "hmac", HMACSecret: "0123456789abcdef"}
	body := []byte(`{"a":1}`)
	sum := func(data string) string {
		m := hmac.New(sha256.New, []byte(tr.HMACSecret))
		m.Write([]byte(data))
		return hex.EncodeToString(m.Sum(nil))
	}
	now := strconv.FormatInt(time.Now().Unix(), 10)
	old := strconv.FormatInt(time.Now().Add(-10*time.Minute).Unix(), 10)
	for sig, want := range map[string]bool{
		"sha256=" + sum(string(body)):                         true,
		sum(string(body)):                                     true,
		"t=" + now + ",v1=" + sum(now+"."+string(body)):       true,
		"t=" + now + ",v1=00,v1=" + sum(now+"."+string(body)): true,
		"t=" + old + ",v1=" + sum(old+"."+string(body)):       false,
		"sha256=" + sum("other"):                              false,
		"t=" + now + ",v1=" + sum("17."+string(body)):         false,
		"v1=" + sum(string(body)):                             false,
		"":                                                    false,
		"sha256=zz":                                           false,
	} {
		if got := tr.VerifyHMAC(sig, body); got != want {
			t.Errorf("%q: %v, want %v", sig, got, want)
		}
	}
}
