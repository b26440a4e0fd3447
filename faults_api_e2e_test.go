package main

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/smithy-go"
	"github.com/minilambda/minilambda/internal/dockertest"
)

// Lambda API requests the server must refuse after checking them, through
// the real binary and aws-sdk-go-v2: each refusal is Lambda's 400
// InvalidParameterValueException and changes nothing, in the answers and
// in the event log.

// afToken is the API token of these tests' servers.
const afToken = "faults-token"

// afServer starts the binary with a token over a fresh log and returns it,
// the log's path and an SDK client that signs for it.
func afServer(t *testing.T) (*server, string, *lambda.Client) {
	t.Helper()
	db := filepath.Join(t.TempDir(), "events.db")
	s := startServer(t, db, "--token", afToken)
	return s, db, lambdaClient(s.addr, "minilambda", afToken)
}

// afHead is the seq of the last event in the server's log.
func afHead(t *testing.T, s *server) uint64 {
	t.Helper()
	var head struct {
		Seq uint64 `json:"head_seq"`
	}
	if code := s.callAs("GET", "/audit", nil, &head, afToken); code != 200 {
		t.Fatalf("GET /audit: %d", code)
	}
	return head.Seq
}

// afRefused checks that err is Lambda's 400 InvalidParameterValueException
// and that its message holds each of says.
func afRefused(t *testing.T, what string, err error, says ...string) {
	t.Helper()
	code, status := apiError(err)
	var ae smithy.APIError
	msg := ""
	if errors.As(err, &ae) {
		msg = ae.ErrorMessage()
	}
	if code != "InvalidParameterValueException" || status != 400 {
		t.Errorf("%s: %s %d (%v), want 400 InvalidParameterValueException", what, code, status, err)
		return
	}
	for _, s := range says {
		if !strings.Contains(msg, s) {
			t.Errorf("%s: the message %q does not say %q", what, msg, s)
		}
	}
}

// afVersions lists the versions of function name.
func afVersions(t *testing.T, c *lambda.Client, name string) []string {
	t.Helper()
	out, err := c.ListVersionsByFunction(context.Background(), &lambda.ListVersionsByFunctionInput{FunctionName: aws.String(name)})
	if err != nil {
		t.Fatalf("list versions of %s: %v", name, err)
	}
	var vs []string
	for _, v := range out.Versions {
		vs = append(vs, aws.ToString(v.Version))
	}
	return vs
}

// afCreate creates the lambda function name with image.
func afCreate(t *testing.T, c *lambda.Client, name, image string) *lambda.CreateFunctionOutput {
	t.Helper()
	out, err := c.CreateFunction(context.Background(), &lambda.CreateFunctionInput{
		FunctionName: aws.String(name), PackageType: types.PackageTypeImage,
		Code: &types.FunctionCode{ImageUri: aws.String(image)}, Role: aws.String("arn:aws:iam::000000000000:role/lambda"),
	})
	if err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
	return out
}

// TestPublishVersionWithAWrongCodeSha256PublishesNothing publishes with a
// CodeSha256 that is not the image's: 400, no version listed, nothing
// appended to the log; the image's own CodeSha256 then publishes version
// 1, the only function.version_published event in the log.
func TestPublishVersionWithAWrongCodeSha256PublishesNothing(t *testing.T) {
	cli := dockertest.Client(t)
	img := dockertest.BuildGoImage(t, cli, "internal/testfn/lambdago", "minilambda-e2e-faults-sha")
	s, db, c := afServer(t)
	ctx := context.Background()
	created := afCreate(t, c, "sha", img.Tag)

	head := afHead(t, s)
	wrong := strings.Repeat("0", 64)
	_, err := c.PublishVersion(ctx, &lambda.PublishVersionInput{FunctionName: aws.String("sha"), CodeSha256: aws.String(wrong)})
	afRefused(t, "publish with a wrong CodeSha256", err, wrong)
	if vs := afVersions(t, c, "sha"); strings.Join(vs, ",") != "$LATEST" {
		t.Errorf("versions after a refused publish: %v", vs)
	}
	if now := afHead(t, s); now != head {
		t.Errorf("a refused publish appended %d events", now-head)
	}

	v, err := c.PublishVersion(ctx, &lambda.PublishVersionInput{FunctionName: aws.String("sha"), CodeSha256: created.CodeSha256})
	if err != nil || aws.ToString(v.Version) != "1" || aws.ToString(v.CodeSha256) != aws.ToString(created.CodeSha256) {
		t.Fatalf("publish with the image's CodeSha256: %v %+v", err, v)
	}
	if err := s.stop(15); err != nil {
		t.Fatal(err)
	}
	if n := dumpTypes(t, db)["function.version_published"]; n != 1 {
		t.Errorf("%d function.version_published events, want the one of version 1", n)
	}
	assertAudit(t, db)
}

// TestDeleteFunctionWithAQualifierDeletesNothing deletes with $LATEST as
// the Qualifier, in the FunctionName, and with a version: each is 400,
// the function and its version stay, invocable, and nothing is appended;
// deleting without a qualifier then deletes it.
func TestDeleteFunctionWithAQualifierDeletesNothing(t *testing.T) {
	cli := dockertest.Client(t)
	img := dockertest.BuildGoImage(t, cli, "internal/testfn/lambdago", "minilambda-e2e-faults-del")
	s, db, c := afServer(t)
	ctx := context.Background()
	afCreate(t, c, "del", img.Tag)
	if _, err := c.PublishVersion(ctx, &lambda.PublishVersionInput{FunctionName: aws.String("del")}); err != nil {
		t.Fatal(err)
	}

	head := afHead(t, s)
	for _, in := range []*lambda.DeleteFunctionInput{
		{FunctionName: aws.String("del"), Qualifier: aws.String("$LATEST")},
		{FunctionName: aws.String("del:$LATEST")},
		{FunctionName: aws.String("arn:aws:lambda:us-east-1:000000000000:function:del"), Qualifier: aws.String("$LATEST")},
		{FunctionName: aws.String("del"), Qualifier: aws.String("1")},
	} {
		what := "delete " + aws.ToString(in.FunctionName) + " qualifier " + aws.ToString(in.Qualifier)
		_, err := c.DeleteFunction(ctx, in)
		afRefused(t, what, err)
	}
	if now := afHead(t, s); now != head {
		t.Errorf("refused deletes appended %d events", now-head)
	}
	if _, err := c.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("del")}); err != nil {
		t.Fatalf("the function after refused deletes: %v", err)
	}
	if vs := afVersions(t, c, "del"); strings.Join(vs, ",") != "$LATEST,1" {
		t.Errorf("versions after refused deletes: %v", vs)
	}
	out, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("del"), Qualifier: aws.String("1"), Payload: []byte(`{"name": "still"}`)})
	if err != nil {
		t.Errorf("version 1 after refused deletes: %v", err)
	} else if out.FunctionError != nil || !strings.Contains(string(out.Payload), "Hello, still!") {
		t.Errorf("version 1 after refused deletes: %s %s", aws.ToString(out.FunctionError), out.Payload)
	}

	if _, err := c.DeleteFunction(ctx, &lambda.DeleteFunctionInput{FunctionName: aws.String("del")}); err != nil {
		t.Fatal(err)
	}
	var nf *types.ResourceNotFoundException
	if _, err := c.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("del")}); !errors.As(err, &nf) {
		t.Errorf("the function after its delete: %v", err)
	}
	if err := s.stop(15); err != nil {
		t.Fatal(err)
	}
	if n := dumpTypes(t, db)["function.deleted"]; n != 1 {
		t.Errorf("%d function.deleted events, want 1", n)
	}
	assertAudit(t, db)
}

// TestImagesNotInTheEngineAreRefused sets functions to an image the engine
// does not have, through every path that sets one: CreateFunction (with
// and without Publish), UpdateFunctionCode (with and without Publish),
// the native register and update. Each is refused (Lambda's 400
// InvalidParameterValueException, the native API's 400), its message
// naming the image, and appends nothing; the function keeps its image and
// still runs.
func TestImagesNotInTheEngineAreRefused(t *testing.T) {
	cli := dockertest.Client(t)
	img := dockertest.BuildGoImage(t, cli, "internal/testfn/lambdago", "minilambda-e2e-faults-img")
	s, db, c := afServer(t)
	ctx := context.Background()
	created := afCreate(t, c, "img", img.Tag)
	absent := dockertest.UniqueTag("minilambda-e2e-never-built")

	head := afHead(t, s)
	for _, publish := range []bool{false, true} {
		_, err := c.CreateFunction(ctx, &lambda.CreateFunctionInput{
			FunctionName: aws.String("absent"), PackageType: types.PackageTypeImage, Publish: publish,
			Code: &types.FunctionCode{ImageUri: aws.String(absent)}, Role: aws.String("r"),
		})
		afRefused(t, "CreateFunction of an absent image", err, absent)
		_, err = c.UpdateFunctionCode(ctx, &lambda.UpdateFunctionCodeInput{FunctionName: aws.String("img"), ImageUri: aws.String(absent), Publish: publish})
		afRefused(t, "UpdateFunctionCode to an absent image", err, absent)
	}
	var native struct {
		Error string `json:"error"`
		Field string `json:"field"`
	}
	if code := s.callAs("POST", "/functions", map[string]any{"name": "absent-native", "image": absent}, &native, afToken); code != 400 || !strings.Contains(native.Error, absent) || native.Field != "image" {
		t.Errorf("native register of an absent image: %d %q (field %q)", code, native.Error, native.Field)
	}
	native.Error, native.Field = "", ""
	if code := s.callAs("PUT", "/functions/img", map[string]any{"image": absent}, &native, afToken); code != 400 || !strings.Contains(native.Error, absent) || native.Field != "image" {
		t.Errorf("native update to an absent image: %d %q (field %q)", code, native.Error, native.Field)
	}
	if now := afHead(t, s); now != head {
		t.Errorf("refused requests appended %d events", now-head)
	}

	var nf *types.ResourceNotFoundException
	for _, name := range []string{"absent", "absent-native"} {
		if _, err := c.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String(name)}); !errors.As(err, &nf) {
			t.Errorf("%s after a refused create: %v", name, err)
		}
	}
	got, err := c.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("img")})
	if err != nil || aws.ToString(got.Code.ImageUri) != img.Tag || aws.ToString(got.Configuration.CodeSha256) != aws.ToString(created.CodeSha256) ||
		aws.ToString(got.Configuration.RevisionId) != aws.ToString(created.RevisionId) {
		t.Errorf("the function after refused updates: %v %+v", err, got)
	}
	if vs := afVersions(t, c, "img"); strings.Join(vs, ",") != "$LATEST" {
		t.Errorf("versions after refused updates: %v", vs)
	}
	out, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("img"), Payload: []byte(`{"name": "kept"}`)})
	if err != nil {
		t.Errorf("invoke after refused updates: %v", err)
	} else if out.FunctionError != nil || !strings.Contains(string(out.Payload), "Hello, kept!") {
		t.Errorf("invoke after refused updates: %s %s", aws.ToString(out.FunctionError), out.Payload)
	}
	if err := s.stop(15); err != nil {
		t.Fatal(err)
	}
	events := dumpTypes(t, db)
	if events["function.registered"] != 1 || events["function.updated"] != 0 || events["function.version_published"] != 0 {
		t.Errorf("events %v, want only the one function registered", events)
	}
	assertAudit(t, db)
}
