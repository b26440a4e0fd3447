package main

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/minilambda/minilambda/internal/dockertest"
	"github.com/minilambda/minilambda/runner/control"
)

// zipOf is a zip archive of files (name → contents), bootstrap and files
// under bin/ executable, the others not; a name ending in "@" is a
// symbolic link (its contents the target), without the "@".
func zipOf(t *testing.T, files map[string][]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for name, body := range files {
		h := &zip.FileHeader{Name: name, Method: zip.Deflate}
		switch {
		case strings.HasSuffix(name, "@"):
			h.Name = strings.TrimSuffix(name, "@")
			h.SetMode(fs.ModeSymlink | 0o777)
		case name == "bootstrap" || strings.HasPrefix(name, "bin/"):
			h.SetMode(0o755)
		default:
			h.SetMode(0o644)
		}
		w, err := zw.CreateHeader(h)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(body)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// writeFile writes data to a file of its own in dir and returns its path.
func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// builtImages lists the images the server built for function name.
func builtImages(t *testing.T, cli *client.Client, name string) []image.Summary {
	t.Helper()
	imgs, err := cli.ImageList(context.Background(), image.ListOptions{
		Filters: filters.NewArgs(filters.Arg("label", control.LabelCodeFunction+"="+name)),
	})
	if err != nil {
		t.Fatal(err)
	}
	return imgs
}

// removeBuiltAtCleanup removes, at cleanup, the images the server built
// for the functions named.
func removeBuiltAtCleanup(t *testing.T, cli *client.Client, names ...string) {
	t.Cleanup(func() {
		for _, name := range names {
			for _, img := range builtImages(t, cli, name) {
				cli.ImageRemove(context.Background(), img.ID, image.RemoveOptions{Force: true, PruneChildren: true})
			}
		}
	})
}

// TestZipPackagesWithTheAWSCLI deploys a Go function as a zip archive the
// way AWS documents it (provided.al2023, a bootstrap built with
// aws-lambda-go), with Debian's AWS CLI against a server that checks
// SigV4: create, invoke, publish, new code, the old version still
// answering the old way; then hostile archives, each refused with
// Lambda's error and nothing built or registered; then the native API's
// registration of a package; then the audit.
func TestZipPackagesWithTheAWSCLI(t *testing.T) {
	awsCLI := "/usr/bin/aws"
	if _, err := os.Stat(awsCLI); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("Debian's AWS CLI is missing (%v): apt-get install awscli", err)
		}
		t.Skip("no AWS CLI at /usr/bin/aws (apt-get install awscli)")
	}
	cli := dockertest.Client(t)
	const token = "zip-token"
	_, suffix, _ := strings.Cut(dockertest.UniqueTag("z"), ":")
	fnName, nativeName := "zip-"+suffix, "zipnative-"+suffix
	var refused []string
	for _, n := range []string{"notzip", "dotdot", "abslink", "bomb", "big", "cobol", "python", "absent", "nobootstrap"} {
		refused = append(refused, n+"-"+suffix)
	}
	removeBuiltAtCleanup(t, cli, append([]string{fnName, nativeName, "zipnode-" + suffix}, refused...)...)

	dir := t.TempDir()
	bootA := dockertest.GoBinary(t, "internal/testfn/lambdago", "main.build=a")
	bootB := dockertest.GoBinary(t, "internal/testfn/lambdago", "main.build=b")
	zipA := zipOf(t, map[string][]byte{"bootstrap": bootA, "data/greeting.txt": []byte("hi"), "data/link@": []byte("greeting.txt")})
	zipB := zipOf(t, map[string][]byte{"bootstrap": bootB})
	pathA, pathB := writeFile(t, dir, "a.zip", zipA), writeFile(t, dir, "b.zip", zipB)

	db := filepath.Join(t.TempDir(), "events.db")
	// A stand-in for a managed runtime's base image (AWS's carry the
	// runtime interface client): a Lambda runtime of its own, which the
	// package's files go on top of, and which gets the handler.
	nodeBase := dockertest.BuildGoImage(t, cli, "internal/testfn/lambdago", "zip-node-base")
	s := startServer(t, db, "--token", token, "--runtime-image", "python3.13=minilambda-test/absent:"+suffix+",nodejs20.x="+nodeBase.Tag)
	env := append(os.Environ(), "AWS_ACCESS_KEY_ID=minilambda", "AWS_SECRET_ACCESS_KEY="+token, "AWS_DEFAULT_REGION=us-east-1",
		"AWS_PAGER=", "AWS_EC2_METADATA_DISABLED=true", "AWS_CONFIG_FILE="+filepath.Join(dir, "none"), "AWS_SHARED_CREDENTIALS_FILE="+filepath.Join(dir, "none"))
	// aws runs the CLI and decodes its JSON answer into out; it returns
	// the CLI's error output, empty on success.
	aws := func(out any, args ...string) string {
		t.Helper()
		cmd := exec.Command(awsCLI, append([]string{"--endpoint-url", "http://" + s.addr, "--output", "json", "lambda"}, args...)...)
		cmd.Env = env
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			if stderr.Len() == 0 {
				t.Fatalf("aws lambda %s: %v", args[0], err)
			}
			return stderr.String()
		}
		if out != nil && stdout.Len() > 0 {
			if err := json.Unmarshal(stdout.Bytes(), out); err != nil {
				t.Fatalf("aws lambda %s: %v\n%s", args[0], err, stdout.String())
			}
		}
		return ""
	}
	type config struct {
		FunctionName, PackageType, Runtime, Handler, CodeSha256, Version, State string
		CodeSize                                                                int64
	}
	sha := func(b []byte) string { s := sha256.Sum256(b); return base64.StdEncoding.EncodeToString(s[:]) }
	invoke := func(qualifier string) (build string) {
		t.Helper()
		out := filepath.Join(dir, "out.json")
		args := []string{"invoke", "--function-name", fnName, "--cli-binary-format", "raw-in-base64-out", "--payload", `{"name": "Zip"}`, out}
		if qualifier != "" {
			args = append(args, "--qualifier", qualifier)
		}
		if e := aws(nil, args...); e != "" {
			t.Fatalf("invoke %s: %s", qualifier, e)
		}
		var answer struct{ Message, Build string }
		body, _ := os.ReadFile(out)
		if err := json.Unmarshal(body, &answer); err != nil || answer.Message != "Hello, Zip!" {
			t.Fatalf("invoke %s: %v %s", qualifier, err, body)
		}
		return answer.Build
	}

	var created config
	if e := aws(&created, "create-function", "--function-name", fnName, "--runtime", "provided.al2023", "--handler", "bootstrap",
		"--zip-file", "fileb://"+pathA, "--role", "arn:aws:iam::000000000000:role/lambda", "--timeout", "10"); e != "" {
		t.Fatalf("create-function: %s", e)
	}
	if created.PackageType != "Zip" || created.Runtime != "provided.al2023" || created.Handler != "bootstrap" ||
		created.CodeSha256 != sha(zipA) || created.CodeSize != int64(len(zipA)) || created.State != "Active" {
		t.Errorf("created: %+v, want a Zip package of code %s, %d bytes", created, sha(zipA), len(zipA))
	}
	if got := invoke(""); got != "a" {
		t.Errorf("$LATEST ran build %q, want a", got)
	}
	var v1 config
	if e := aws(&v1, "publish-version", "--function-name", fnName); e != "" || v1.Version != "1" || v1.CodeSha256 != sha(zipA) {
		t.Fatalf("publish-version: %s %+v", e, v1)
	}
	var updated config
	if e := aws(&updated, "update-function-code", "--function-name", fnName, "--zip-file", "fileb://"+pathB); e != "" ||
		updated.CodeSha256 != sha(zipB) || updated.PackageType != "Zip" {
		t.Fatalf("update-function-code: %s %+v", e, updated)
	}
	if got := invoke(""); got != "b" {
		t.Errorf("$LATEST after update-function-code ran build %q, want b", got)
	}
	if got := invoke("1"); got != "a" {
		t.Errorf("version 1 ran build %q after the update, want a (the image it was built into)", got)
	}
	if e := aws(nil, "publish-version", "--function-name", fnName, "--code-sha256", sha(zipA)); !strings.Contains(e, "InvalidParameterValueException") {
		t.Errorf("publish-version with the old code's hash: %q, want InvalidParameterValueException", e)
	}
	var v2 config
	if e := aws(&v2, "publish-version", "--function-name", fnName, "--code-sha256", sha(zipB)); e != "" || v2.Version != "2" {
		t.Fatalf("publish-version 2: %s %+v", e, v2)
	}
	if got := invoke("2"); got != "b" {
		t.Errorf("version 2 ran build %q, want b", got)
	}
	if e := aws(nil, "update-function-code", "--function-name", fnName, "--image-uri", "anything:1"); !strings.Contains(e, "InvalidParameterValueException") {
		t.Errorf("an image for a Zip package: %q, want InvalidParameterValueException", e)
	}

	// A runtime the operator mapped: built on its image, given the handler.
	nodeName := "zipnode-" + suffix
	var onNode config
	if e := aws(&onNode, "create-function", "--function-name", nodeName, "--runtime", "nodejs20.x", "--handler", "index.handler",
		"--zip-file", "fileb://"+writeFile(t, dir, "node.zip", zipOf(t, map[string][]byte{"index.js": []byte("exports.handler = async () => 'hi';\n")})),
		"--role", "r"); e != "" || onNode.Runtime != "nodejs20.x" || onNode.PackageType != "Zip" {
		t.Fatalf("create-function on nodejs20.x: %s %+v", e, onNode)
	}
	if e := aws(nil, "invoke", "--function-name", nodeName, filepath.Join(dir, "node.json")); e != "" {
		t.Fatalf("invoke on nodejs20.x: %s", e)
	}
	var onNodeAnswer struct{ Env map[string]string }
	if body, _ := os.ReadFile(filepath.Join(dir, "node.json")); json.Unmarshal(body, &onNodeAnswer) != nil ||
		onNodeAnswer.Env["_HANDLER"] != "index.handler" || onNodeAnswer.Env["LAMBDA_TASK_ROOT"] != "/var/task" {
		t.Errorf("the function on the mapped runtime: %s", body)
	}

	// Hostile and unusable archives: Lambda's error, nothing built, no
	// function.
	bomb := func() []byte {
		var buf bytes.Buffer
		zw := zip.NewWriter(&buf)
		w, _ := zw.Create("bootstrap")
		zero := make([]byte, 1<<20)
		for range 260 {
			w.Write(zero)
		}
		zw.Close()
		return buf.Bytes()
	}()
	big := func() []byte {
		var buf bytes.Buffer
		zw := zip.NewWriter(&buf)
		w, _ := zw.CreateHeader(&zip.FileHeader{Name: "bootstrap", Method: zip.Store})
		io.CopyN(w, rand.Reader, 50<<20+1)
		zw.Close()
		return buf.Bytes()
	}()
	damaged := bytes.Clone(zipB)
	for i := len(damaged) / 3; i < len(damaged)/3+64; i++ {
		damaged[i] ^= 0x5a
	}
	for _, tc := range []struct {
		name, runtime string
		data          []byte
		want          string
	}{
		// The CLI refuses what is not a zip itself: a zip whose file is
		// damaged, which only its reading finds.
		{"notzip", "provided.al2023", damaged, "could not unzip"},
		{"dotdot", "provided.al2023", zipOf(t, map[string][]byte{"bootstrap": bootA, "../../etc/cron.d/x": []byte("* * * * * root sh")}), "escapes the archive's root"},
		{"abslink", "provided.al2023", zipOf(t, map[string][]byte{"bootstrap": bootA, "etc@": []byte("/etc")}), "outside the archive"},
		{"bomb", "provided.al2023", bomb, "250 MB"},
		{"big", "provided.al2023", big, "RequestEntityTooLargeException"},
		{"cobol", "cobol85", zipA, "cobol85"},
		{"python", "python3.12", zipOf(t, map[string][]byte{"app.py": []byte("def handler(e, c): return e\n")}), "--runtime-image python3.12=IMAGE"},
		{"absent", "python3.13", zipOf(t, map[string][]byte{"app.py": []byte("def handler(e, c): return e\n")}), "is not in the server's engine"},
		{"nobootstrap", "provided.al2023", zipOf(t, map[string][]byte{"main": bootA}), "bootstrap"},
	} {
		name := tc.name + "-" + suffix
		p := writeFile(t, dir, tc.name+".zip", tc.data)
		e := aws(nil, "create-function", "--function-name", name, "--runtime", tc.runtime, "--handler", "bootstrap",
			"--zip-file", "fileb://"+p, "--role", "r")
		if !strings.Contains(e, tc.want) {
			t.Errorf("%s: %q, want it to say %q", tc.name, e, tc.want)
		}
		if tc.name != "big" && !strings.Contains(e, "InvalidParameterValueException") {
			t.Errorf("%s: %q, want InvalidParameterValueException", tc.name, e)
		}
		if e := aws(nil, "get-function", "--function-name", name); !strings.Contains(e, "ResourceNotFoundException") {
			t.Errorf("%s: get-function after the refusal: %q, want ResourceNotFoundException", tc.name, e)
		}
		if imgs := builtImages(t, cli, name); len(imgs) != 0 {
			t.Errorf("%s: the refusal left %d images built", tc.name, len(imgs))
		}
	}

	// The native API registers a package too, and shows it.
	var native struct {
		Mode    string
		Image   string
		Package struct {
			Runtime    string `json:"runtime"`
			CodeSha256 string `json:"code_sha256"`
			CodeSize   int64  `json:"code_size"`
			BaseImage  string `json:"base_image"`
		}
	}
	if code := s.callAs("POST", "/functions", map[string]any{"name": nativeName, "runtime": "provided.al2", "handler": "bootstrap",
		"zip_file": zipA, "timeout": 10}, &native, token); code != 201 {
		t.Fatalf("native registration of a zip package: %d", code)
	}
	if native.Mode != "lambda" || native.Package.Runtime != "provided.al2" || native.Package.CodeSha256 != sha(zipA) ||
		native.Package.BaseImage != "scratch" || !strings.HasPrefix(native.Image, "minilambda-zip/"+nativeName+":") {
		t.Errorf("native registration: %+v", native)
	}
	var res struct{ Status, Result string }
	if code := s.callAs("POST", "/invoke/"+nativeName, map[string]any{"event": map[string]string{"name": "Native"}}, &res, token); code != 200 ||
		!strings.Contains(res.Result, `"build":"a"`) {
		t.Errorf("native invoke: %d %+v", code, res)
	}
	if code := s.callAs("PUT", "/functions/"+nativeName+"/code", map[string]any{"zip_file": zipB}, &native, token); code != 200 || native.Package.CodeSha256 != sha(zipB) {
		t.Errorf("native code update: %d %+v", code, native)
	}
	if code := s.callAs("PUT", "/functions/"+nativeName+"/code", map[string]any{"zip_file": []byte("nope")}, nil, token); code != 400 {
		t.Errorf("native code update with no archive: %d, want 400", code)
	}

	if err := s.stop(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	out, _, err := runCmd(t, "audit", "--db", db)
	if err != nil || !strings.HasPrefix(out, "audit ok") {
		t.Fatalf("audit: %v\n%s", err, out)
	}
	dump, _, err := runCmd(t, "dump", "--db", db)
	if err != nil || strings.Count(dump, `"type":"image.built"`) != 5 {
		t.Errorf("dump: %v; %d image.built events, want 5 (two builds each of two functions, one on the mapped runtime)", err, strings.Count(dump, `"type":"image.built"`))
	}
}
