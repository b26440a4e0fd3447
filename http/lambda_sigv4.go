package http

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// Requests to the Lambda API are signed with AWS Signature Version 4. The
// server recomputes the signature with the AWS SDK's own signer, over the
// headers the client says it signed, and compares.

// sigv4MaxSkew is how far a request's X-Amz-Date may be from the server's
// clock, as AWS allows.
const sigv4MaxSkew = 15 * time.Minute

// errSignature is a request whose signature does not check out; errKey one
// signed with an access key the server does not know.
var (
	errSignature = errors.New("signature")
	errKey       = errors.New("access key")
)

// sigv4Header is the parsed Authorization header of a signed request.
type sigv4Header struct {
	accessKey, date, region, service string
	signedHeaders                    []string
	signature                        string
}

func parseSigV4(auth string) (sigv4Header, error) {
	var h sigv4Header
	rest, ok := strings.CutPrefix(auth, "AWS4-HMAC-SHA256 ")
	if !ok {
		return h, fmt.Errorf("%w: the Authorization header is not AWS4-HMAC-SHA256", errSignature)
	}
	for _, part := range strings.Split(rest, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "Credential":
			f := strings.Split(v, "/")
			if len(f) != 5 || f[4] != "aws4_request" {
				return h, fmt.Errorf("%w: malformed Credential", errSignature)
			}
			h.accessKey, h.date, h.region, h.service = f[0], f[1], f[2], f[3]
		case "SignedHeaders":
			h.signedHeaders = strings.Split(v, ";")
		case "Signature":
			h.signature = v
		}
	}
	if h.accessKey == "" || len(h.signedHeaders) == 0 || h.signature == "" {
		return h, fmt.Errorf("%w: the Authorization header lacks Credential, SignedHeaders or Signature", errSignature)
	}
	return h, nil
}

// checkSigV4Header checks what r's headers alone say of its signature:
// its form, its key and its date. It comes before the body is read, so
// that a stranger's body is never read.
func checkSigV4Header(r *http.Request, accessKey string, now time.Time) (sigv4Header, time.Time, error) {
	h, err := parseSigV4(r.Header.Get("Authorization"))
	if err != nil {
		return h, time.Time{}, err
	}
	if subtle.ConstantTimeCompare([]byte(h.accessKey), []byte(accessKey)) != 1 {
		return h, time.Time{}, fmt.Errorf("%w: the security token included in the request is invalid", errKey)
	}
	at, err := time.Parse("20060102T150405Z", r.Header.Get("X-Amz-Date"))
	if err != nil {
		return h, at, fmt.Errorf("%w: missing or malformed X-Amz-Date", errSignature)
	}
	if d := now.Sub(at); d > sigv4MaxSkew || d < -sigv4MaxSkew {
		return h, at, fmt.Errorf("%w: signature expired: %s is more than %v from the server's time %s",
			errSignature, at.Format("20060102T150405Z"), sigv4MaxSkew, now.UTC().Format("20060102T150405Z"))
	}
	if h.date != at.Format("20060102") {
		return h, at, fmt.Errorf("%w: the Credential's date is not X-Amz-Date's", errSignature)
	}
	if h.service != "lambda" {
		return h, at, fmt.Errorf("%w: the Credential's service is %.20q, not lambda", errSignature, h.service)
	}
	// Headers that change what a request does must be signed, or a
	// replay could add them (X-Amz-Log-Type: Tail, say).
	for name := range r.Header {
		lower := strings.ToLower(name)
		if strings.HasPrefix(lower, "x-amz-") && lower != "x-amz-content-sha256" && !slices.Contains(h.signedHeaders, lower) {
			return h, at, fmt.Errorf("%w: header %s is not among the signed headers", errSignature, name)
		}
	}
	return h, at, nil
}

// verifySigV4 checks r's signature over body with the key pair given.
func verifySigV4(r *http.Request, body []byte, accessKey, secret string, now time.Time) error {
	h, at, err := checkSigV4Header(r, accessKey, now)
	if err != nil {
		return err
	}
	return verifySignature(r, h, at, body, accessKey, secret)
}

// verifySignature is verifySigV4 once checkSigV4Header has passed: it
// signs the request again, with the headers h names, and compares.
func verifySignature(r *http.Request, h sigv4Header, at time.Time, body []byte, accessKey, secret string) error {
	// The same request, with only the headers the client signed: the
	// signer signs every header it is given.
	u := *r.URL
	u.Scheme, u.Host = "http", r.Host
	check := &http.Request{Method: r.Method, URL: &u, Host: r.Host, Header: http.Header{}}
	signedLength := false
	for _, name := range h.signedHeaders {
		switch name {
		case "host", "x-amz-date":
		case "content-length":
			signedLength = true
		default:
			if vs := r.Header.Values(name); len(vs) > 0 {
				check.Header[http.CanonicalHeaderKey(name)] = vs
			}
		}
	}
	if signedLength {
		check.ContentLength = int64(len(body))
	}
	// The signature covers the body through its hash, which a client may
	// also send as X-Amz-Content-Sha256: it must be this body's.
	sum := sha256.Sum256(body)
	payload := hex.EncodeToString(sum[:])
	if sent := r.Header.Get("X-Amz-Content-Sha256"); sent != "" && sent != payload {
		return fmt.Errorf("%w: X-Amz-Content-Sha256 is not the hash of the body", errSignature)
	}
	creds := aws.Credentials{AccessKeyID: accessKey, SecretAccessKey: secret, SessionToken: r.Header.Get("X-Amz-Security-Token")}
	if err := v4.NewSigner().SignHTTP(r.Context(), creds, check, payload, h.service, h.region, at); err != nil {
		return fmt.Errorf("%w: %v", errSignature, err)
	}
	want, err := parseSigV4(check.Header.Get("Authorization"))
	if err != nil {
		return err
	}
	if subtle.ConstantTimeCompare([]byte(want.signature), []byte(h.signature)) != 1 {
		return fmt.Errorf("%w: the request signature we calculated does not match the signature you provided; check your AWS secret access key and signing method", errSignature)
	}
	return nil
}
