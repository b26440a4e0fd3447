package function

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/textproto"
	"strconv"
	"strings"
	"time"
)

// HTTPTrigger lets plain HTTP requests to /hooks/{function} invoke a
// function: webhooks from other services, browsers, curl.
type HTTPTrigger struct {
	// Auth is who may call: "token" (the server's API token, the
	// default), "none" (anyone), "hmac" (a request whose body is signed
	// with HMACSecret, in HMACHeader), or "aws_iam" (a request signed with
	// AWS Signature Version 4 by the server's key pair, as a Lambda
	// function URL's AuthType AWS_IAM).
	Auth string `json:"auth,omitempty"`
	// HMACSecret is write-only: the API never shows it.
	HMACSecret string `json:"hmac_secret,omitempty"`
	HMACHeader string `json:"hmac_header,omitempty"`
	// Async answers 202 with the invocation id at once, as the header
	// X-Invocation-Type: Event asks for one request.
	Async bool `json:"async,omitempty"`
}

// StripeTolerance is how far a Stripe-style signature's timestamp may be
// from the server's clock.
const StripeTolerance = 5 * time.Minute

// Trigger auth kinds, and the default signature header (GitHub's).
const (
	TriggerAuthToken     = "token"
	TriggerAuthNone      = "none"
	TriggerAuthHMAC      = "hmac"
	TriggerAuthAWSIAM    = "aws_iam"
	DefaultHMACHeader    = "X-Hub-Signature-256"
	MinHMACSecretLen     = 16
	maxHMACSecretLen     = 512
	maxHMACHeaderNameLen = 128
)

// normalizeTrigger checks a trigger and fills in its defaults.
func normalizeTrigger(t *HTTPTrigger) error {
	if t == nil {
		return nil
	}
	switch t.Auth {
	case "":
		t.Auth = TriggerAuthToken
	case TriggerAuthToken, TriggerAuthNone, TriggerAuthHMAC, TriggerAuthAWSIAM:
	default:
		return fieldErr("http_trigger.auth", `http_trigger.auth must be "token", "none", "hmac" or "aws_iam", got %.20q`, t.Auth)
	}
	if t.Auth != TriggerAuthHMAC {
		if t.HMACSecret != "" || t.HMACHeader != "" {
			field := "http_trigger.hmac_secret"
			if t.HMACSecret == "" {
				field = "http_trigger.hmac_header"
			}
			return fieldErr(field, `http_trigger.hmac_secret and hmac_header are for "auth": "hmac"`)
		}
		return nil
	}
	if len(t.HMACSecret) < MinHMACSecretLen || len(t.HMACSecret) > maxHMACSecretLen {
		return fieldErr("http_trigger.hmac_secret", "http_trigger.hmac_secret must be %d to %d bytes", MinHMACSecretLen, maxHMACSecretLen)
	}
	if t.HMACHeader == "" {
		t.HMACHeader = DefaultHMACHeader
	}
	if len(t.HMACHeader) > maxHMACHeaderNameLen || strings.IndexFunc(t.HMACHeader, func(r rune) bool {
		return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '-')
	}) >= 0 {
		return fieldErr("http_trigger.hmac_header", "http_trigger.hmac_header %.40q is not a header name", t.HMACHeader)
	}
	t.HMACHeader = textproto.CanonicalMIMEHeaderKey(t.HMACHeader)
	return nil
}

// Redacted is the trigger as the API shows it: without its secret.
func (t *HTTPTrigger) Redacted() *HTTPTrigger {
	if t == nil {
		return nil
	}
	c := *t
	c.HMACSecret = ""
	return &c
}

// VerifyHMAC reports whether signature, the value of the trigger's
// header, signs body with its secret: "sha256=<hex>" as GitHub sends it,
// "<hex>", or "t=<timestamp>,v1=<hex>" over "<timestamp>.<body>" as Stripe
// does, within StripeTolerance of the timestamp.
func (t *HTTPTrigger) VerifyHMAC(signature string, body []byte) bool {
	sign := func(parts ...[]byte) []byte {
		m := hmac.New(sha256.New, []byte(t.HMACSecret))
		for _, p := range parts {
			m.Write(p)
		}
		return m.Sum(nil)
	}
	equal := func(hexSig string, want []byte) bool {
		got, err := hex.DecodeString(hexSig)
		return err == nil && hmac.Equal(got, want)
	}
	if strings.Contains(signature, "v1=") {
		var ts string
		var sigs []string
		for _, kv := range strings.Split(signature, ",") {
			k, v, _ := strings.Cut(strings.TrimSpace(kv), "=")
			switch k {
			case "t":
				ts = v
			case "v1":
				sigs = append(sigs, v)
			}
		}
		// As Stripe's libraries do: a signature older (or newer) than the
		// tolerance is a replay.
		sec, err := strconv.ParseInt(ts, 10, 64)
		if err != nil || time.Since(time.Unix(sec, 0)).Abs() > StripeTolerance {
			return false
		}
		want := sign([]byte(ts), []byte("."), body)
		for _, s := range sigs {
			if equal(s, want) {
				return true
			}
		}
		return false
	}
	return equal(strings.TrimPrefix(signature, "sha256="), sign(body))
}
