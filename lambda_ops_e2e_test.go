package main

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	smithyhttp "github.com/aws/smithy-go/transport/http"
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
	// A URL destination's records come here.
	posted := make(chan []byte, 4)
	sinkURL := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		select {
		case posted <- body:
		default:
		}
	}))
	defer sinkURL.Close()
	s := startServer(t, db, "--token", token, "--max-in-flight", "32", "--callback-hosts", strings.TrimPrefix(sinkURL.URL, "http://"))
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

	// Event invoke config: the async settings, and destinations that get
	// Lambda's destination record.
	if _, err := c.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("sink"), PackageType: types.PackageTypeImage,
		Code: &types.FunctionCode{ImageUri: aws.String(img.Tag)}, Role: aws.String("r")}); err != nil {
		t.Fatal(err)
	}
	_, err = c.GetFunctionEventInvokeConfig(ctx, &lambda.GetFunctionEventInvokeConfigInput{FunctionName: fn})
	wantErr("the event config of a function without one", err, "ResourceNotFoundException", 404)
	for what, in := range map[string]*lambda.PutFunctionEventInvokeConfigInput{
		"3 retries":          {FunctionName: fn, MaximumRetryAttempts: aws.Int32(3)},
		"an age of 10 s":     {FunctionName: fn, MaximumEventAgeInSeconds: aws.Int32(10)},
		"no such function":   {FunctionName: fn, DestinationConfig: &types.DestinationConfig{OnFailure: &types.OnFailure{Destination: aws.String("arn:aws:lambda:us-east-1:000000000000:function:nope")}}},
		"a host not allowed": {FunctionName: fn, DestinationConfig: &types.DestinationConfig{OnSuccess: &types.OnSuccess{Destination: aws.String("http://example.com/x")}}},
	} {
		_, err := c.PutFunctionEventInvokeConfig(ctx, in)
		wantErr("event config with "+what, err, "InvalidParameterValueException", 400)
	}
	sinkARN := aws.String("arn:aws:lambda:us-east-1:000000000000:function:sink")
	put, err := c.PutFunctionEventInvokeConfig(ctx, &lambda.PutFunctionEventInvokeConfigInput{FunctionName: fn,
		MaximumRetryAttempts: aws.Int32(0), MaximumEventAgeInSeconds: aws.Int32(600),
		DestinationConfig: &types.DestinationConfig{OnSuccess: &types.OnSuccess{Destination: aws.String("sink")}, OnFailure: &types.OnFailure{Destination: sinkARN}}})
	if err != nil || aws.ToInt32(put.MaximumRetryAttempts) != 0 || aws.ToInt32(put.MaximumEventAgeInSeconds) != 600 ||
		aws.ToString(put.DestinationConfig.OnFailure.Destination) != *sinkARN {
		t.Fatalf("put event config: %v %+v", err, put)
	}
	if code := s.callAs("GET", "/functions/ops", nil, &struct{}{}, token); code != 200 {
		t.Fatal(code)
	}
	var nativeAsync struct {
		MaxAttempts  int `json:"max_attempts"`
		MaxEventAge  int `json:"max_event_age"`
		Destinations struct {
			OnSuccess string `json:"on_success"`
			OnFailure string `json:"on_failure"`
		} `json:"destinations"`
	}
	s.callAs("GET", "/functions/ops", nil, &nativeAsync, token)
	if nativeAsync.MaxAttempts != 1 || nativeAsync.MaxEventAge != 600 || nativeAsync.Destinations.OnSuccess != "sink" {
		t.Errorf("the native API's view of the event config: %+v", nativeAsync)
	}
	// An async invocation that fails, with no retries: OnFailure gets it.
	failed, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: fn, InvocationType: types.InvocationTypeEvent, Payload: []byte(`{"error": "boom"}`)})
	if err != nil {
		t.Fatal(err)
	}
	succeeded, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: fn, InvocationType: types.InvocationTypeEvent, Payload: []byte(`{"name": "Dest"}`)})
	if err != nil {
		t.Fatal(err)
	}
	sourceID := func(out *lambda.InvokeOutput) string {
		var md struct{ RequestID string }
		if raw, ok := awsmiddleware.GetRawResponse(out.ResultMetadata).(*smithyhttp.Response); ok {
			md.RequestID = raw.Header.Get("X-Amzn-Requestid")
		}
		return md.RequestID
	}
	failedID, succeededID := sourceID(failed), sourceID(succeeded)
	type timeline struct {
		Events []struct {
			Type string `json:"type"`
			Data struct {
				Event         json.RawMessage `json:"event"`
				DestinationOf *struct {
					InvocationID string `json:"invocation_id"`
					Condition    string `json:"condition"`
					Depth        int    `json:"depth"`
				} `json:"destination_of"`
			} `json:"data"`
		} `json:"events"`
	}
	type record struct {
		RequestContext struct {
			RequestID, FunctionArn, Condition string
			ApproximateInvokeCount            int
		} `json:"requestContext"`
		RequestPayload  map[string]any `json:"requestPayload"`
		ResponseContext struct {
			StatusCode      int    `json:"statusCode"`
			ExecutedVersion string `json:"executedVersion"`
			FunctionError   string `json:"functionError"`
		} `json:"responseContext"`
		ResponsePayload map[string]any `json:"responsePayload"`
	}
	got := map[string]record{}
	for deadline := time.Now().Add(time.Minute); len(got) < 2; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the sink got %d destination records in a minute, want 2", len(got))
		}
		var page struct {
			Invocations []struct {
				InvocationID string `json:"invocation_id"`
				Status       string `json:"status"`
			} `json:"invocations"`
		}
		s.callAs("GET", "/invocations?function=sink", nil, &page, token)
		for _, inv := range page.Invocations {
			var tl timeline
			s.callAs("GET", "/invocations/"+inv.InvocationID+"/events", nil, &tl, token)
			if len(tl.Events) == 0 || tl.Events[0].Data.DestinationOf == nil {
				continue
			}
			var rec record
			if err := json.Unmarshal(tl.Events[0].Data.Event, &rec); err != nil {
				t.Fatalf("the sink's event is not a destination record: %v %s", err, tl.Events[0].Data.Event)
			}
			if d := tl.Events[0].Data.DestinationOf; d.InvocationID != rec.RequestContext.RequestID || d.Condition != rec.RequestContext.Condition || d.Depth != 1 {
				t.Errorf("destination_of %+v for a record of %s %s", d, rec.RequestContext.RequestID, rec.RequestContext.Condition)
			}
			got[rec.RequestContext.RequestID] = rec
		}
	}
	if rec := got[failedID]; rec.RequestContext.Condition != "RetriesExhausted" || rec.RequestPayload["error"] != "boom" ||
		rec.ResponseContext.FunctionError != "Unhandled" || !strings.Contains(fmt.Sprint(rec.ResponsePayload["errorMessage"]), "boom") ||
		rec.RequestContext.FunctionArn != "arn:aws:lambda:us-east-1:000000000000:function:ops:$LATEST" || rec.RequestContext.ApproximateInvokeCount != 1 {
		t.Errorf("OnFailure's record of %s: %+v", failedID, rec)
	}
	if rec := got[succeededID]; rec.RequestContext.Condition != "Success" || rec.RequestPayload["name"] != "Dest" ||
		rec.ResponseContext.FunctionError != "" || rec.ResponsePayload["message"] != "Hello, Dest!" {
		t.Errorf("OnSuccess's record of %s: %+v", succeededID, rec)
	}
	// A URL destination is POSTed the record.
	if _, err := c.UpdateFunctionEventInvokeConfig(ctx, &lambda.UpdateFunctionEventInvokeConfigInput{FunctionName: fn,
		DestinationConfig: &types.DestinationConfig{OnSuccess: &types.OnSuccess{Destination: aws.String(sinkURL.URL + "/dest")}}}); err != nil {
		t.Fatal(err)
	}
	toURL, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: fn, InvocationType: types.InvocationTypeEvent, Payload: []byte(`{"name": "URL"}`)})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case body := <-posted:
		var rec record
		if err := json.Unmarshal(body, &rec); err != nil || rec.RequestContext.RequestID != sourceID(toURL) ||
			rec.RequestContext.Condition != "Success" || rec.RequestPayload["name"] != "URL" || rec.ResponsePayload["message"] != "Hello, URL!" {
			t.Errorf("the URL destination's record: %v %s", err, body)
		}
	case <-time.After(time.Minute):
		t.Fatal("the URL destination got no record in a minute")
	}
	upd, err := c.UpdateFunctionEventInvokeConfig(ctx, &lambda.UpdateFunctionEventInvokeConfigInput{FunctionName: fn, MaximumRetryAttempts: aws.Int32(2)})
	if err != nil || aws.ToInt32(upd.MaximumRetryAttempts) != 2 || aws.ToInt32(upd.MaximumEventAgeInSeconds) != 600 || upd.DestinationConfig.OnFailure == nil {
		t.Errorf("update event config: %v %+v", err, upd)
	}
	if list, err := c.ListFunctionEventInvokeConfigs(ctx, &lambda.ListFunctionEventInvokeConfigsInput{FunctionName: fn}); err != nil || len(list.FunctionEventInvokeConfigs) != 1 {
		t.Errorf("list event configs: %v %+v", err, list)
	}
	if _, err := c.DeleteFunctionEventInvokeConfig(ctx, &lambda.DeleteFunctionEventInvokeConfigInput{FunctionName: fn}); err != nil {
		t.Fatal(err)
	}
	_, err = c.GetFunctionEventInvokeConfig(ctx, &lambda.GetFunctionEventInvokeConfigInput{FunctionName: fn})
	wantErr("the event config after delete", err, "ResourceNotFoundException", 404)

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
