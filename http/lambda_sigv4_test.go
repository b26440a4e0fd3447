package http

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// signed is a request as an AWS client sends it: signed at t with the key
// pair given, over these headers and body.
func signed(t *testing.T, key, secret, body string, at time.Time) *http.Request {
	t.Helper()
	r, err := http.NewRequest("POST", "http://127.0.0.1:8300/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A000000000000%3Afunction%3Ahello/invocations?Qualifier=1", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("X-Amz-Invocation-Type", "RequestResponse")
	r.Header.Set("User-Agent", "test")
	sum := sha256.Sum256([]byte(body))
	if err := v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: key, SecretAccessKey: secret}, r, hex.EncodeToString(sum[:]), "lambda", "us-east-1", at); err != nil {
		t.Fatal(err)
	}
	// As the server sees it: the path decoded, the raw form kept.
	r.RequestURI = r.URL.RequestURI()
	return r
}

func TestVerifySigV4(t *testing.T) {
	now := time.Now()
	body := `{"name": "Ada"}`
	if err := verifySigV4(signed(t, "minilambda", "s3cret", body, now), []byte(body), "minilambda", "s3cret", now); err != nil {
		t.Fatalf("a good signature: %v", err)
	}
	for name, c := range map[string]struct {
		r    *http.Request
		body string
		want error
	}{
		"wrong secret":    {signed(t, "minilambda", "other", body, now), body, errSignature},
		"unknown key":     {signed(t, "someone", "s3cret", body, now), body, errKey},
		"body changed":    {signed(t, "minilambda", "s3cret", body, now), `{"name": "Eve"}`, errSignature},
		"stale":           {signed(t, "minilambda", "s3cret", body, now.Add(-20*time.Minute)), body, errSignature},
		"from the future": {signed(t, "minilambda", "s3cret", body, now.Add(20*time.Minute)), body, errSignature},
	} {
		if err := verifySigV4(c.r, []byte(c.body), "minilambda", "s3cret", now); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", name, err, c.want)
		}
	}
	r := signed(t, "minilambda", "s3cret", body, now)
	r.Header.Set("X-Amz-Invocation-Type", "Event")
	if err := verifySigV4(r, []byte(body), "minilambda", "s3cret", now); !errors.Is(err, errSignature) {
		t.Errorf("a signed header changed: %v", err)
	}
	r = signed(t, "minilambda", "s3cret", body, now)
	r.Header.Set("X-Amz-Log-Type", "Tail")
	if err := verifySigV4(r, []byte(body), "minilambda", "s3cret", now); !errors.Is(err, errSignature) {
		t.Errorf("an unsigned X-Amz- header added: %v", err)
	}
	r = signed(t, "minilambda", "s3cret", body, now)
	r.Header.Set("User-Agent", "another")
	if err := verifySigV4(r, []byte(body), "minilambda", "s3cret", now); err != nil {
		t.Errorf("an unsigned header changed: %v", err)
	}
	for _, auth := range []string{"", "Bearer x", "AWS4-HMAC-SHA256 Credential=a/b, Signature=c", "AWS4-HMAC-SHA256 Credential=k/20260101/us-east-1/lambda/aws4_request, SignedHeaders=host, Signature="} {
		r := signed(t, "minilambda", "s3cret", body, now)
		r.Header.Set("Authorization", auth)
		if err := verifySigV4(r, []byte(body), "minilambda", "s3cret", now); !errors.Is(err, errSignature) {
			t.Errorf("Authorization %q: %v", auth, err)
		}
	}
}
