package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/smithy-go"
	"github.com/minilambda/minilambda/internal/dockertest"
)

// lambdaClient is the AWS SDK's Lambda client for the server at addr,
// signing with the key pair given.
func lambdaClient(addr, key, secret string) *lambda.Client {
	return lambda.New(lambda.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String("http://" + addr),
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: key, SecretAccessKey: secret}, nil
		}),
		RetryMaxAttempts: 1,
	})
}

// apiError is the Lambda error code and HTTP status of err.
func apiError(err error) (string, int) {
	var ae smithy.APIError
	var re *awshttp.ResponseError
	code, status := "", 0
	if errors.As(err, &ae) {
		code = ae.ErrorCode()
	}
	if errors.As(err, &re) {
		status = re.HTTPStatusCode()
	}
	return code, status
}

// TestLambdaAPIWithTheAWSSDK drives the server with aws-sdk-go-v2's Lambda
// client, every request signed with SigV4 and checked by the server:
// functions, versions and aliases, every kind of invocation, the errors,
// then audits the log the SDK and the native API wrote together.
func TestLambdaAPIWithTheAWSSDK(t *testing.T) {
	cli := dockertest.Client(t)
	imgA := dockertest.BuildGoImage(t, cli, "internal/testfn/lambdago", "minilambda-e2e-sdk-a")
	imgB := dockertest.BuildGoImage(t, cli, "internal/testfn/lambdago", "minilambda-e2e-sdk-b")
	const token = "sdk-token"
	db := filepath.Join(t.TempDir(), "events.db")
	s := startServer(t, db, "--token", token)
	c := lambdaClient(s.addr, "minilambda", token)
	ctx := context.Background()

	created, err := c.CreateFunction(ctx, &lambda.CreateFunctionInput{
		FunctionName: aws.String("sdk"), PackageType: types.PackageTypeImage,
		Code:    &types.FunctionCode{ImageUri: aws.String(imgA.Tag)},
		Role:    aws.String("arn:aws:iam::000000000000:role/lambda"),
		Timeout: aws.Int32(5), MemorySize: aws.Int32(128), Description: aws.String("from the SDK"),
		Environment: &types.Environment{Variables: map[string]string{"OWN": "a"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(created.FunctionArn) != "arn:aws:lambda:us-east-1:000000000000:function:sdk" || created.State != types.StateActive ||
		aws.ToString(created.CodeSha256) != strings.TrimPrefix(imgA.ID, "sha256:") || aws.ToString(created.Version) != "$LATEST" {
		t.Errorf("created: %+v", created)
	}
	if _, err := c.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("zip"), Code: &types.FunctionCode{ZipFile: []byte("PK")}, Runtime: types.RuntimeProvidedal2023, Role: aws.String("r")}); err == nil {
		t.Error("a zip package was accepted")
	} else if code, status := apiError(err); code != "InvalidParameterValueException" || status != 400 {
		t.Errorf("zip: %s %d", code, status)
	}
	got, err := c.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("sdk")})
	if err != nil || aws.ToString(got.Configuration.Description) != "from the SDK" || aws.ToString(got.Code.ImageUri) != imgA.Tag ||
		aws.ToString(got.Configuration.Role) != "arn:aws:iam::000000000000:role/lambda" {
		t.Fatalf("get: %v %+v", err, got)
	}

	// Functions registered through the native API are Lambda functions too.
	for _, name := range []string{"native-1", "native-2"} {
		if code := s.callToken("POST", "/functions", map[string]any{"name": name, "image": imgA.Tag, "mode": "lambda"}, token); code != 201 {
			t.Fatalf("register %s: %d", name, code)
		}
	}
	var names []string
	for p := lambda.NewListFunctionsPaginator(c, &lambda.ListFunctionsInput{MaxItems: aws.Int32(2)}); p.HasMorePages(); {
		page, err := p.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Functions) > 2 {
			t.Errorf("a page of %d functions for MaxItems 2", len(page.Functions))
		}
		for _, f := range page.Functions {
			names = append(names, aws.ToString(f.FunctionName))
		}
	}
	if strings.Join(names, ",") != "native-1,native-2,sdk" {
		t.Errorf("listed %v", names)
	}

	invoke := func(in *lambda.InvokeInput) *lambda.InvokeOutput {
		t.Helper()
		out, err := c.Invoke(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	out := invoke(&lambda.InvokeInput{FunctionName: aws.String("sdk"), Payload: []byte(`{"name": "Ada"}`), LogType: types.LogTypeTail})
	var answer struct {
		Message string            `json:"message"`
		Env     map[string]string `json:"env"`
	}
	logs, _ := base64.StdEncoding.DecodeString(aws.ToString(out.LogResult))
	if json.Unmarshal(out.Payload, &answer) != nil || answer.Message != "Hello, Ada!" || answer.Env["OWN"] != "a" ||
		out.StatusCode != 200 || out.FunctionError != nil || aws.ToString(out.ExecutedVersion) != "$LATEST" || !strings.Contains(string(logs), `handling "Ada"`) {
		t.Errorf("invoke: %+v payload %s logs %q", out, out.Payload, logs)
	}

	// Version 1 keeps image A after the code moves to B.
	v1, err := c.PublishVersion(ctx, &lambda.PublishVersionInput{FunctionName: aws.String("sdk"), Description: aws.String("one")})
	if err != nil || aws.ToString(v1.Version) != "1" || aws.ToString(v1.FunctionArn) != "arn:aws:lambda:us-east-1:000000000000:function:sdk:1" {
		t.Fatalf("publish: %v %+v", err, v1)
	}
	code, err := c.UpdateFunctionCode(ctx, &lambda.UpdateFunctionCodeInput{FunctionName: aws.String("sdk"), ImageUri: aws.String(imgB.Tag)})
	if err != nil || aws.ToString(code.CodeSha256) != strings.TrimPrefix(imgB.ID, "sha256:") {
		t.Fatalf("update code: %v %+v", err, code)
	}
	if _, err := c.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{FunctionName: aws.String("sdk"), Timeout: aws.Int32(9),
		Environment: &types.Environment{Variables: map[string]string{"OWN": "b"}}}); err != nil {
		t.Fatal(err)
	}
	conf, err := c.GetFunctionConfiguration(ctx, &lambda.GetFunctionConfigurationInput{FunctionName: aws.String("sdk")})
	if err != nil || aws.ToInt32(conf.Timeout) != 9 || conf.Environment.Variables["OWN"] != "b" {
		t.Fatalf("configuration: %v %+v", err, conf)
	}
	if one := invoke(&lambda.InvokeInput{FunctionName: aws.String("sdk"), Qualifier: aws.String("1"), Payload: []byte(`{}`)}); aws.ToString(one.ExecutedVersion) != "1" ||
		json.Unmarshal(one.Payload, &answer) != nil || answer.Env["OWN"] != "a" {
		t.Errorf("version 1: %+v %s", one, one.Payload)
	}
	v2, err := c.PublishVersion(ctx, &lambda.PublishVersionInput{FunctionName: aws.String("sdk")})
	if err != nil || aws.ToString(v2.Version) != "2" {
		t.Fatalf("publish 2: %v %+v", err, v2)
	}
	versions, err := c.ListVersionsByFunction(ctx, &lambda.ListVersionsByFunctionInput{FunctionName: aws.String("sdk")})
	if err != nil || len(versions.Versions) != 3 || aws.ToString(versions.Versions[0].Version) != "$LATEST" || aws.ToString(versions.Versions[2].Version) != "2" {
		t.Fatalf("versions: %v %+v", err, versions)
	}
	// A page at a time, $LATEST alone on the first.
	var paged []string
	for p := lambda.NewListVersionsByFunctionPaginator(c, &lambda.ListVersionsByFunctionInput{FunctionName: aws.String("sdk"), MaxItems: aws.Int32(1)}); p.HasMorePages(); {
		page, err := p.NextPage(ctx)
		if err != nil || len(page.Versions) != 1 {
			t.Fatalf("a page of versions: %v %+v", err, page)
		}
		paged = append(paged, aws.ToString(page.Versions[0].Version))
	}
	if strings.Join(paged, ",") != "$LATEST,1,2" {
		t.Errorf("versions a page at a time: %v", paged)
	}

	// An alias weighted between the two versions runs both.
	if _, err := c.CreateAlias(ctx, &lambda.CreateAliasInput{FunctionName: aws.String("sdk"), Name: aws.String("live"), FunctionVersion: aws.String("1"),
		RoutingConfig: &types.AliasRoutingConfiguration{AdditionalVersionWeights: map[string]float64{"2": 0.5}}}); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for range 20 {
		seen[aws.ToString(invoke(&lambda.InvokeInput{FunctionName: aws.String("sdk:live")}).ExecutedVersion)] = true
	}
	if !seen["1"] || !seen["2"] || len(seen) != 2 {
		t.Errorf("the alias ran %v", seen)
	}
	if _, err := c.UpdateAlias(ctx, &lambda.UpdateAliasInput{FunctionName: aws.String("sdk"), Name: aws.String("live"), FunctionVersion: aws.String("2"),
		RoutingConfig: &types.AliasRoutingConfiguration{}}); err != nil {
		t.Fatal(err)
	}
	alias, err := c.GetAlias(ctx, &lambda.GetAliasInput{FunctionName: aws.String("sdk"), Name: aws.String("live")})
	if err != nil || aws.ToString(alias.FunctionVersion) != "2" || alias.RoutingConfig != nil {
		t.Errorf("alias: %v %+v", err, alias)
	}
	if aliases, err := c.ListAliases(ctx, &lambda.ListAliasesInput{FunctionName: aws.String("sdk")}); err != nil || len(aliases.Aliases) != 1 {
		t.Errorf("aliases: %v %+v", err, aliases)
	}

	// Async, dry run, a failing function, throttling, a missing one.
	if ev := invoke(&lambda.InvokeInput{FunctionName: aws.String("sdk"), InvocationType: types.InvocationTypeEvent, Payload: []byte(`{"name": "later"}`)}); ev.StatusCode != 202 {
		t.Errorf("event: %d", ev.StatusCode)
	}
	if dry := invoke(&lambda.InvokeInput{FunctionName: aws.String("sdk"), InvocationType: types.InvocationTypeDryRun}); dry.StatusCode != 204 {
		t.Errorf("dry run: %d", dry.StatusCode)
	}
	failed := invoke(&lambda.InvokeInput{FunctionName: aws.String("sdk"), Payload: []byte(`{"error": "no luck"}`)})
	var fe struct{ ErrorMessage, ErrorType string }
	if aws.ToString(failed.FunctionError) != "Unhandled" || json.Unmarshal(failed.Payload, &fe) != nil || fe.ErrorMessage != "no luck" || fe.ErrorType == "" {
		t.Errorf("a handler error: %+v %s", failed, failed.Payload)
	}
	if code := s.callToken("POST", "/functions", map[string]any{"name": "one-at-a-time", "image": imgA.Tag, "mode": "lambda", "concurrency": 1}, token); code != 201 {
		t.Fatalf("register: %d", code)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("one-at-a-time"), Payload: []byte(`{"sleep_ms": 1500}`)})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	throttled := 0
	for err := range errs {
		var tm *types.TooManyRequestsException
		if errors.As(err, &tm) {
			throttled++
		} else if err != nil {
			t.Errorf("concurrent call: %v", err)
		}
	}
	if throttled != 1 {
		t.Errorf("%d of two calls past a concurrency of 1 throttled", throttled)
	}
	// Cold and hot functions of the native API answer through Invoke too,
	// their stdout as the response.
	hotImg := dockertest.BuildGoImage(t, cli, "testdata/hot", "minilambda-e2e-sdk-hot")
	for _, mode := range []string{"cold", "hot"} {
		if code := s.callToken("POST", "/functions", map[string]any{"name": "native-" + mode, "image": hotImg.Tag, "mode": mode}, token); code != 201 {
			t.Fatalf("register %s: %d", mode, code)
		}
		out := invoke(&lambda.InvokeInput{FunctionName: aws.String("native-" + mode), Payload: []byte(`{"name": "` + mode + `"}`), LogType: types.LogTypeTail})
		logs, _ := base64.StdEncoding.DecodeString(aws.ToString(out.LogResult))
		if out.FunctionError != nil || !strings.Contains(string(out.Payload), `"message":"Hello, `+mode+`!"`) || string(logs) != "handling \""+mode+"\"\n" {
			t.Errorf("a %s function through Invoke: %+v %s logs %q", mode, out, out.Payload, logs)
		}
	}

	// ImageConfig replaces the image's entrypoint: one that does not
	// exist fails the invocation, the image's own path serves it again.
	if _, err := c.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("configured"), PackageType: types.PackageTypeImage,
		Code: &types.FunctionCode{ImageUri: aws.String(imgA.Tag)}, Role: aws.String("r"),
		ImageConfig: &types.ImageConfig{EntryPoint: []string{"/missing"}, Command: []string{"arg"}}}); err != nil {
		t.Fatal(err)
	}
	if conf, err := c.GetFunctionConfiguration(ctx, &lambda.GetFunctionConfigurationInput{FunctionName: aws.String("configured")}); err != nil ||
		conf.ImageConfigResponse == nil || strings.Join(conf.ImageConfigResponse.ImageConfig.EntryPoint, " ") != "/missing" {
		t.Errorf("image config: %v %+v", err, conf)
	}
	if out := invoke(&lambda.InvokeInput{FunctionName: aws.String("configured")}); aws.ToString(out.FunctionError) != "Unhandled" ||
		!strings.Contains(string(out.Payload), "Runtime.InvalidEntrypoint") {
		t.Errorf("a missing entrypoint: %+v %s", out, out.Payload)
	}
	if _, err := c.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{FunctionName: aws.String("configured"),
		ImageConfig: &types.ImageConfig{EntryPoint: []string{"/fn"}}}); err != nil {
		t.Fatal(err)
	}
	if out := invoke(&lambda.InvokeInput{FunctionName: aws.String("configured"), Payload: []byte(`{"name": "again"}`)}); out.FunctionError != nil ||
		!strings.Contains(string(out.Payload), "Hello, again!") {
		t.Errorf("the image's own entrypoint set again: %+v %s", out, out.Payload)
	}

	var nf *types.ResourceNotFoundException
	if _, err := c.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("nope")}); !errors.As(err, &nf) {
		t.Errorf("a missing function: %v", err)
	}
	if _, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("sdk"), Qualifier: aws.String("7")}); !errors.As(err, &nf) {
		t.Errorf("a missing version: %v", err)
	}

	// Signed with the wrong secret, or another key: 403, nothing changed.
	for _, bad := range []*lambda.Client{lambdaClient(s.addr, "minilambda", "wrong"), lambdaClient(s.addr, "AKIDOTHER", token)} {
		_, err := bad.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("intruder"), PackageType: types.PackageTypeImage,
			Code: &types.FunctionCode{ImageUri: aws.String(imgA.Tag)}, Role: aws.String("r")})
		if code, status := apiError(err); status != 403 || code != "InvalidSignatureException" && code != "UnrecognizedClientException" {
			t.Errorf("a bad signature: %s %d (%v)", code, status, err)
		}
	}
	if _, err := c.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("intruder")}); !errors.As(err, &nf) {
		t.Errorf("a request with a bad signature created a function: %v", err)
	}

	if _, err := c.DeleteFunction(ctx, &lambda.DeleteFunctionInput{FunctionName: aws.String("sdk")}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("sdk")}); !errors.As(err, &nf) {
		t.Errorf("a deleted function: %v", err)
	}
	if err := s.stop(15); err != nil {
		t.Fatal(err)
	}
	assertAudit(t, db)
}
