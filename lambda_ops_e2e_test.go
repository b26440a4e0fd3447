package main

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/minilambda/minilambda/internal/dockertest"
)

// streamed reads an InvokeWithResponseStream answer with the SDK's own
// event-stream reader: the chunks' payload joined, the chunks, and the
// InvokeComplete event.
func streamed(t *testing.T, out *lambda.InvokeWithResponseStreamOutput) (payload []byte, chunks int, complete *types.InvokeWithResponseStreamCompleteEvent) {
	t.Helper()
	stream := out.GetStream()
	defer stream.Close()
	for ev := range stream.Events() {
		switch v := ev.(type) {
		case *types.InvokeWithResponseStreamResponseEventMemberPayloadChunk:
			payload = append(payload, v.Value.Payload...)
			chunks++
		case *types.InvokeWithResponseStreamResponseEventMemberInvokeComplete:
			complete = &v.Value
		default:
			t.Errorf("an event of type %T", ev)
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatalf("the event stream: %v", err)
	}
	if complete == nil {
		t.Fatal("the stream ended without InvokeComplete")
	}
	return payload, chunks, complete
}

// TestLambdaOperationsWithTheAWSSDK drives the operations deploy tools call
// beside the functions' own, with aws-sdk-go-v2 signing every request:
// account settings with the server's limits, reserved concurrency,
// tags, InvokeWithResponseStream read with the SDK's event-stream reader,
// and Lambda-shaped answers to operations the server does not have; then
// audits the log.
func TestLambdaOperationsWithTheAWSSDK(t *testing.T) {
	cli := dockertest.Client(t)
	img := dockertest.BuildGoImage(t, cli, "internal/testfn/lambdago", "minilambda-e2e-ops")
	const token = "ops-token"
	db := filepath.Join(t.TempDir(), "events.db")
	s := startServer(t, db, "--token", token, "--max-in-flight", "32")
	c := lambdaClient(s.addr, "minilambda", token)
	ctx := context.Background()
	fn := aws.String("ops")
	wantErr := func(what string, err error, code string, status int) {
		t.Helper()
		if err == nil {
			t.Errorf("%s: accepted, want %s", what, code)
			return
		}
		if got, st := apiError(err); got != code || st != status {
			t.Errorf("%s: %s %d (%v), want %s %d", what, got, st, err, code, status)
		}
	}

	if _, err := c.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: fn, PackageType: types.PackageTypeImage,
		Code: &types.FunctionCode{ImageUri: aws.String(img.Tag)}, Role: aws.String("r"), Tags: map[string]string{"team": "a"}}); err != nil {
		t.Fatal(err)
	}
	_, err := c.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("badtags"), PackageType: types.PackageTypeImage,
		Code: &types.FunctionCode{ImageUri: aws.String(img.Tag)}, Role: aws.String("r"), Tags: map[string]string{"aws:owned": "x"}})
	wantErr("a reserved tag key at create", err, "InvalidParameterValueException", 400)
	if _, err := c.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("badtags")}); err == nil {
		t.Error("a create refused for its tags registered the function")
	}

	// Account settings: the server's limits.
	settings := func() *lambda.GetAccountSettingsOutput {
		t.Helper()
		out, err := c.GetAccountSettings(ctx, &lambda.GetAccountSettingsInput{})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	acct := settings()
	if acct.AccountLimit.ConcurrentExecutions != 32 || aws.ToInt32(acct.AccountLimit.UnreservedConcurrentExecutions) != 32 ||
		acct.AccountLimit.CodeSizeZipped != 50<<20 || acct.AccountLimit.CodeSizeUnzipped != 262144000 || acct.AccountUsage.FunctionCount != 1 {
		t.Errorf("account settings: %+v %+v", acct.AccountLimit, acct.AccountUsage)
	}

	// Reserved concurrency is the function's concurrency.
	if out, err := c.PutFunctionConcurrency(ctx, &lambda.PutFunctionConcurrencyInput{FunctionName: fn, ReservedConcurrentExecutions: aws.Int32(5)}); err != nil ||
		aws.ToInt32(out.ReservedConcurrentExecutions) != 5 {
		t.Fatalf("put concurrency: %v %+v", err, out)
	}
	if out, err := c.GetFunctionConcurrency(ctx, &lambda.GetFunctionConcurrencyInput{FunctionName: fn}); err != nil || aws.ToInt32(out.ReservedConcurrentExecutions) != 5 {
		t.Errorf("get concurrency: %v %+v", err, out)
	}
	if got, err := c.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: fn}); err != nil || got.Concurrency == nil ||
		aws.ToInt32(got.Concurrency.ReservedConcurrentExecutions) != 5 || got.Tags["team"] != "a" {
		t.Errorf("get function: %v %+v", err, got)
	}
	var native struct {
		Concurrency int               `json:"concurrency"`
		Tags        map[string]string `json:"tags"`
	}
	if code := s.callAs("GET", "/functions/ops", nil, &native, token); code != 200 || native.Concurrency != 5 || native.Tags["team"] != "a" {
		t.Errorf("the native API's view: %d %+v", code, native)
	}
	if acct := settings(); aws.ToInt32(acct.AccountLimit.UnreservedConcurrentExecutions) != 27 {
		t.Errorf("unreserved after reserving 5: %d", aws.ToInt32(acct.AccountLimit.UnreservedConcurrentExecutions))
	}
	_, err = c.PutFunctionConcurrency(ctx, &lambda.PutFunctionConcurrencyInput{FunctionName: fn, ReservedConcurrentExecutions: aws.Int32(0)})
	wantErr("concurrency 0", err, "InvalidParameterValueException", 400)
	_, err = c.PutFunctionConcurrency(ctx, &lambda.PutFunctionConcurrencyInput{FunctionName: fn, ReservedConcurrentExecutions: aws.Int32(33)})
	wantErr("concurrency past --max-in-flight", err, "InvalidParameterValueException", 400)
	_, err = c.PutFunctionConcurrency(ctx, &lambda.PutFunctionConcurrencyInput{FunctionName: aws.String("nope"), ReservedConcurrentExecutions: aws.Int32(2)})
	wantErr("concurrency of no function", err, "ResourceNotFoundException", 404)
	if _, err := c.DeleteFunctionConcurrency(ctx, &lambda.DeleteFunctionConcurrencyInput{FunctionName: fn}); err != nil {
		t.Fatal(err)
	}
	if out, err := c.GetFunctionConcurrency(ctx, &lambda.GetFunctionConcurrencyInput{FunctionName: fn}); err != nil || out.ReservedConcurrentExecutions != nil {
		t.Errorf("get concurrency after delete: %v %+v", err, out)
	}

	// Tags.
	arn := aws.String("arn:aws:lambda:us-east-1:000000000000:function:ops")
	listTags := func() map[string]string {
		t.Helper()
		out, err := c.ListTags(ctx, &lambda.ListTagsInput{Resource: arn})
		if err != nil {
			t.Fatal(err)
		}
		return out.Tags
	}
	if _, err := c.TagResource(ctx, &lambda.TagResourceInput{Resource: arn, Tags: map[string]string{"env": "prod", "team": "b"}}); err != nil {
		t.Fatal(err)
	}
	if got := listTags(); !maps.Equal(got, map[string]string{"env": "prod", "team": "b"}) {
		t.Errorf("tags: %v", got)
	}
	if _, err := c.UntagResource(ctx, &lambda.UntagResourceInput{Resource: arn, TagKeys: []string{"team", "absent"}}); err != nil {
		t.Fatal(err)
	}
	if got := listTags(); !maps.Equal(got, map[string]string{"env": "prod"}) {
		t.Errorf("tags after untag: %v", got)
	}
	_, err = c.TagResource(ctx, &lambda.TagResourceInput{Resource: arn, Tags: map[string]string{"aws:x": "y"}})
	wantErr("a reserved tag key", err, "InvalidParameterValueException", 400)
	_, err = c.ListTags(ctx, &lambda.ListTagsInput{Resource: aws.String("arn:aws:lambda:us-east-1:000000000000:function:nope")})
	wantErr("tags of no function", err, "ResourceNotFoundException", 404)
	_, err = c.TagResource(ctx, &lambda.TagResourceInput{Resource: aws.String("arn:aws:lambda:us-east-1:000000000000:function:ops:1"), Tags: map[string]string{"a": "b"}})
	wantErr("tags of a version", err, "InvalidParameterValueException", 400)

	// InvokeWithResponseStream: the response in chunks, then InvokeComplete.
	out, err := c.InvokeWithResponseStream(ctx, &lambda.InvokeWithResponseStreamInput{FunctionName: fn,
		Payload: []byte(`{"name": "Stream", "echo": 200000}`), LogType: types.LogTypeTail})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(out.ExecutedVersion) != "$LATEST" || out.StatusCode != 200 {
		t.Errorf("stream: version %q status %d", aws.ToString(out.ExecutedVersion), out.StatusCode)
	}
	payload, chunks, complete := streamed(t, out)
	var answer struct {
		Message string `json:"message"`
		Echo    string `json:"echo"`
	}
	logs, _ := base64.StdEncoding.DecodeString(aws.ToString(complete.LogResult))
	if err := json.Unmarshal(payload, &answer); err != nil || answer.Message != "Hello, Stream!" || len(answer.Echo) != 200000 || chunks < 3 {
		t.Errorf("streamed %d bytes in %d chunks: %v %q", len(payload), chunks, err, answer.Message)
	}
	if complete.ErrorCode != nil || !strings.Contains(string(logs), `handling "Stream"`) {
		t.Errorf("InvokeComplete: error %q, logs %q", aws.ToString(complete.ErrorCode), logs)
	}
	out, err = c.InvokeWithResponseStream(ctx, &lambda.InvokeWithResponseStreamInput{FunctionName: fn, Payload: []byte(`{"error": "boom"}`)})
	if err != nil {
		t.Fatal(err)
	}
	payload, _, complete = streamed(t, out)
	if len(payload) != 0 || aws.ToString(complete.ErrorCode) == "" || !strings.Contains(aws.ToString(complete.ErrorDetails), "boom") {
		t.Errorf("a failed streamed invocation: payload %q, InvokeComplete %q %q", payload, aws.ToString(complete.ErrorCode), aws.ToString(complete.ErrorDetails))
	}
	_, err = c.InvokeWithResponseStream(ctx, &lambda.InvokeWithResponseStreamInput{FunctionName: aws.String("nope")})
	wantErr("a stream of no function", err, "ResourceNotFoundException", 404)

	// Function URLs: the function's HTTP trigger, open or SigV4-signed.
	get := func(url string, sign bool) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", url, nil)
		if sign {
			sum := sha256.Sum256(nil)
			creds := aws.Credentials{AccessKeyID: "minilambda", SecretAccessKey: token}
			if err := v4.NewSigner().SignHTTP(ctx, creds, req, hex.EncodeToString(sum[:]), "lambda", "us-east-1", time.Now()); err != nil {
				t.Fatal(err)
			}
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	_, err = c.GetFunctionUrlConfig(ctx, &lambda.GetFunctionUrlConfigInput{FunctionName: fn})
	wantErr("the URL of a function without one", err, "ResourceNotFoundException", 404)
	_, err = c.CreateFunctionUrlConfig(ctx, &lambda.CreateFunctionUrlConfigInput{FunctionName: fn, AuthType: types.FunctionUrlAuthTypeNone,
		Cors: &types.Cors{AllowOrigins: []string{"*"}}})
	wantErr("a URL with CORS", err, "InvalidParameterValueException", 400)
	created, err := c.CreateFunctionUrlConfig(ctx, &lambda.CreateFunctionUrlConfigInput{FunctionName: fn, AuthType: types.FunctionUrlAuthTypeNone})
	if err != nil {
		t.Fatal(err)
	}
	url := aws.ToString(created.FunctionUrl)
	if url != "http://"+s.addr+"/hooks/ops/" || created.AuthType != types.FunctionUrlAuthTypeNone {
		t.Errorf("created URL %q, auth %q", url, created.AuthType)
	}
	if code, body := get(url+"?name=URL", false); code != 200 || !strings.Contains(body, "Hello") {
		t.Errorf("GET the open URL: %d %.200s", code, body)
	}
	_, err = c.CreateFunctionUrlConfig(ctx, &lambda.CreateFunctionUrlConfigInput{FunctionName: fn, AuthType: types.FunctionUrlAuthTypeNone})
	wantErr("a second URL", err, "ResourceConflictException", 409)
	if up, err := c.UpdateFunctionUrlConfig(ctx, &lambda.UpdateFunctionUrlConfigInput{FunctionName: fn, AuthType: types.FunctionUrlAuthTypeAwsIam}); err != nil ||
		up.AuthType != types.FunctionUrlAuthTypeAwsIam {
		t.Fatalf("update the URL to AWS_IAM: %v %+v", err, up)
	}
	if code, _ := get(url, false); code != 403 {
		t.Errorf("GET the AWS_IAM URL unsigned: %d, want 403", code)
	}
	if code, body := get(url, true); code != 200 || !strings.Contains(body, "Hello") {
		t.Errorf("GET the AWS_IAM URL signed: %d %.200s", code, body)
	}
	if list, err := c.ListFunctionUrlConfigs(ctx, &lambda.ListFunctionUrlConfigsInput{FunctionName: fn}); err != nil || len(list.FunctionUrlConfigs) != 1 ||
		list.FunctionUrlConfigs[0].AuthType != types.FunctionUrlAuthTypeAwsIam {
		t.Errorf("list URLs: %v %+v", err, list)
	}
	if _, err := c.DeleteFunctionUrlConfig(ctx, &lambda.DeleteFunctionUrlConfigInput{FunctionName: fn}); err != nil {
		t.Fatal(err)
	}
	if code, _ := get(url, true); code != 404 {
		t.Errorf("GET the deleted URL: %d, want 404", code)
	}

	// Operations the server has no part of: Lambda's answer, after the
	// signature; never the native API's 401.
	_, err = c.ListLayers(ctx, &lambda.ListLayersInput{})
	wantErr("ListLayers", err, "UnknownOperationException", 404)
	_, err = c.GetFunctionCodeSigningConfig(ctx, &lambda.GetFunctionCodeSigningConfigInput{FunctionName: fn})
	wantErr("GetFunctionCodeSigningConfig", err, "UnknownOperationException", 404)
	_, err = c.ListEventSourceMappings(ctx, &lambda.ListEventSourceMappingsInput{})
	wantErr("ListEventSourceMappings", err, "UnknownOperationException", 404)
	_, err = lambdaClient(s.addr, "minilambda", "wrong").ListLayers(ctx, &lambda.ListLayersInput{})
	wantErr("ListLayers with a wrong secret", err, "InvalidSignatureException", 403)
	_, err = lambdaClient(s.addr, "minilambda", "wrong").GetAccountSettings(ctx, &lambda.GetAccountSettingsInput{})
	wantErr("GetAccountSettings with a wrong secret", err, "InvalidSignatureException", 403)

	if err := s.stop(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if out, _, err := runCmd(t, "audit", "--db", db); err != nil || !strings.HasPrefix(out, "audit ok") {
		t.Fatalf("audit: %v\n%s", err, out)
	}
	dump, _, err := runCmd(t, "dump", "--db", db, "--type", "function.tagged")
	if err != nil || strings.Count(dump, "\n") != 3 {
		t.Errorf("dump --type function.tagged: %v\n%s\nwant three events: the create's tags, a tag, an untag", err, dump)
	}
}
