package http

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/julienschmidt/httprouter"
	"github.com/minilambda/minilambda/function"
	"github.com/minilambda/minilambda/projections"
)

// The Lambda API (2015-03-31) over the same functions, versions, aliases
// and invocations as the native API, for the AWS CLI and SDKs: shapes,
// names and status codes as Lambda's, errors as {"Type", "Message"} with
// x-amzn-ErrorType.

const lambdaPrefix = "/2015-03-31"

// lambdaAccount is the account id in the ARNs the server hands out.
const lambdaAccount = "000000000000"

// tailBytes is how much of an invocation's logs X-Amz-Log-Type: Tail
// returns, as Lambda does.
const tailBytes = 4 << 10

// routeLambda registers the Lambda API, in a group whose auth is
// lambdaAuth (SigV4).
func (s *Server) routeLambda(r group) {
	p := lambdaPrefix + "/functions"
	// The AWS CLI and SDKs list at ".../functions/", with the slash.
	r.POST(p, s.lambdaCreate)
	r.GET(p, s.lambdaList)
	r.GET(p+"/", s.lambdaList)
	r.GET(p+"/:name", s.lambdaGet)
	r.DELETE(p+"/:name", s.lambdaDelete)
	r.GET(p+"/:name/configuration", s.lambdaGetConfiguration)
	r.PUT(p+"/:name/configuration", s.lambdaUpdateConfiguration)
	r.PUT(p+"/:name/code", s.lambdaUpdateCode)
	r.POST(p+"/:name/invocations", s.lambdaInvoke)
	r.POST(p+"/:name/versions", s.lambdaPublish)
	r.GET(p+"/:name/versions", s.lambdaListVersions)
	r.POST(p+"/:name/aliases", s.lambdaCreateAlias)
	r.GET(p+"/:name/aliases", s.lambdaListAliases)
	r.GET(p+"/:name/aliases/:alias", s.lambdaGetAlias)
	r.PUT(p+"/:name/aliases/:alias", s.lambdaUpdateAlias)
	r.DELETE(p+"/:name/aliases/:alias", s.lambdaDeleteAlias)
	s.routeLambdaOps(r)
}

// lambdaAuth is the Lambda API group's auth: a request must be signed
// with SigV4 by the server's key pair (signedBody); any is accepted when
// the server has no token.
func (s *Server) lambdaAuth(next httprouter.Handle) httprouter.Handle {
	return func(w http.ResponseWriter, r *http.Request, p httprouter.Params) {
		if s.opts.Token != "" {
			if err := s.signedBody(w, r); err != nil {
				s.writeLambdaError(w, r, err)
				return
			}
		}
		next(w, r, p)
	}
}

// signedBody checks r's SigV4 signature by the server's key pair: the
// headers first, so that a request that cannot be the key's is refused
// before its body is read (a refusal, 403, closes the connection, its body
// unread: ServeHTTP); then the body, read as it comes in the strangers'
// share of the budget, until the signature checks out. Then r is trusted
// (Server.trust) and its body held for the handler. Errors wrap errKey or
// errSignature for a refusal, or are the body's.
func (s *Server) signedBody(w http.ResponseWriter, r *http.Request) error {
	h, at, err := checkSigV4Header(r, s.opts.AWSAccessKeyID, time.Now())
	if err != nil {
		return err
	}
	body, err := s.bodyOf(w, r)
	if err != nil {
		return wrapBody("the request body", err)
	}
	if err := verifySignature(r, h, at, body, s.opts.AWSAccessKeyID, s.opts.AWSSecretAccessKey); err != nil {
		return err
	}
	s.trust(r)
	hold(r, body)
	return nil
}

// lambdaName splits a FunctionName (a name, name:qualifier, an ARN or a
// partial ARN) and the ?Qualifier= into a reference and a qualifier.
func lambdaName(r *http.Request, p httprouter.Params) (ref, qualifier string, err error) {
	name := p.ByName("name")
	qualifier = r.URL.Query().Get("Qualifier")
	parts := strings.Split(name, ":")
	switch {
	case len(parts) >= 7 && parts[0] == "arn" && parts[5] == "function":
		parts = parts[6:]
	case len(parts) >= 3 && parts[1] == "function":
		parts = parts[2:]
	}
	switch len(parts) {
	case 1:
	case 2:
		if qualifier != "" && qualifier != parts[1] {
			return "", "", lambdaInvalid("the qualifier in FunctionName (%s) and Qualifier (%s) differ", parts[1], qualifier)
		}
		qualifier = parts[1]
	default:
		return "", "", lambdaInvalid("FunctionName %.80q is not a name, a name:qualifier or a function ARN", name)
	}
	if function.CheckID(parts[0]) != nil {
		return "", "", lambdaInvalid("FunctionName %.80q is not a valid function name", parts[0])
	}
	return parts[0], qualifier, nil
}

// Lambda's shapes, as its API documents them.
type (
	lambdaEnvironment struct {
		Variables map[string]string `json:"Variables"`
	}
	lambdaImageConfig struct {
		EntryPoint       []string `json:"EntryPoint,omitempty"`
		Command          []string `json:"Command,omitempty"`
		WorkingDirectory string   `json:"WorkingDirectory,omitempty"`
	}
	lambdaConfiguration struct {
		FunctionName        string              `json:"FunctionName"`
		FunctionArn         string              `json:"FunctionArn"`
		Role                string              `json:"Role,omitempty"`
		Runtime             string              `json:"Runtime,omitempty"`
		Handler             string              `json:"Handler,omitempty"`
		CodeSize            int64               `json:"CodeSize"`
		Description         string              `json:"Description"`
		Timeout             int                 `json:"Timeout"`
		MemorySize          int                 `json:"MemorySize"`
		LastModified        string              `json:"LastModified"`
		CodeSha256          string              `json:"CodeSha256"`
		Version             string              `json:"Version"`
		Environment         *lambdaEnvironment  `json:"Environment,omitempty"`
		RevisionID          string              `json:"RevisionId"`
		PackageType         string              `json:"PackageType"`
		State               string              `json:"State"`
		LastUpdateStatus    string              `json:"LastUpdateStatus"`
		Architectures       []string            `json:"Architectures"`
		ImageConfigResponse *lambdaImageConfigR `json:"ImageConfigResponse,omitempty"`
	}
	lambdaImageConfigR struct {
		ImageConfig lambdaImageConfig `json:"ImageConfig"`
	}
	lambdaRouting struct {
		AdditionalVersionWeights map[string]float64 `json:"AdditionalVersionWeights,omitempty"`
	}
	lambdaAlias struct {
		AliasArn        string         `json:"AliasArn"`
		Name            string         `json:"Name"`
		FunctionVersion string         `json:"FunctionVersion"`
		Description     string         `json:"Description"`
		RoutingConfig   *lambdaRouting `json:"RoutingConfig,omitempty"`
		RevisionID      string         `json:"RevisionId"`
	}
)

func (s *Server) arn(name string, qualifier ...string) string {
	region := cmp.Or(s.opts.Region, "us-east-1")
	a := "arn:aws:lambda:" + region + ":" + lambdaAccount + ":function:" + name
	for _, q := range qualifier {
		if q != "" {
			a += ":" + q
		}
	}
	return a
}

// lambdaTime is Lambda's LastModified format.
func lambdaTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000-0700") }

func (s *Server) configuration(f projections.Function, version, digest string, modified time.Time) lambdaConfiguration {
	c := lambdaConfiguration{
		FunctionName: f.Name, FunctionArn: s.arn(f.Name), Role: f.Role, Handler: f.Handler,
		Description: f.Description, Timeout: f.Timeout, MemorySize: f.MemoryMB,
		LastModified: lambdaTime(modified), CodeSha256: strings.TrimPrefix(digest, "sha256:"),
		Version: version, RevisionID: revisionID(f.ID, f.Version),
		PackageType: "Image", State: "Active", LastUpdateStatus: "Successful", Architectures: []string{"x86_64"},
	}
	if p := f.Package; p != nil {
		c.PackageType, c.Runtime, c.CodeSha256, c.CodeSize = "Zip", p.Runtime, p.CodeSha256, p.CodeSize
	}
	if version != function.Latest {
		c.FunctionArn = s.arn(f.Name, version)
	}
	if len(f.Env) > 0 {
		c.Environment = &lambdaEnvironment{Variables: f.Env}
	}
	if len(f.Entrypoint)+len(f.Command) > 0 || f.WorkingDir != "" {
		c.ImageConfigResponse = &lambdaImageConfigR{lambdaImageConfig{EntryPoint: f.Entrypoint, Command: f.Command, WorkingDirectory: f.WorkingDir}}
	}
	return c
}

// latestConfiguration is the $LATEST configuration of f, with the digest
// of the image its tag names now.
func (s *Server) latestConfiguration(r *http.Request, f projections.Function) lambdaConfiguration {
	digest, err := s.opts.Versions.ImageID(r.Context(), f.Image)
	if err != nil {
		digest = ""
	}
	return s.configuration(f, function.Latest, digest, f.UpdatedAt)
}

func (s *Server) versionConfiguration(f projections.Function, v projections.Version) lambdaConfiguration {
	vf := v.Function(f)
	vf.Image = v.Image
	c := s.configuration(vf, strconv.Itoa(v.Number), v.ImageDigest, v.CreatedAt)
	c.Description = cmp.Or(v.Description, c.Description)
	return c
}

// qualified returns the live function ref and, when qualifier names a
// published version (itself or through an alias), that version; nil for
// $LATEST.
func (s *Server) qualified(ref, qualifier string) (projections.Function, *projections.Version, error) {
	f, err := s.opts.Views.Function(ref)
	if err != nil {
		return f, nil, s.notFound(ref, err)
	}
	q, err := function.ParseQualifier(qualifier)
	if err != nil {
		return f, nil, err
	}
	if q.Alias != "" {
		a, err := s.opts.Versions.Alias(f.ID, q.Alias)
		if err != nil {
			return f, nil, s.notFound(ref+":"+q.Alias, err)
		}
		if q, err = function.ParseQualifier(a.FunctionVersion); err != nil {
			return f, nil, err
		}
	}
	if q.Version == 0 {
		return f, nil, nil
	}
	v, err := s.opts.Versions.Version(f.ID, q.Version)
	if err != nil {
		return f, nil, s.notFound(ref+":"+strconv.Itoa(q.Version), err)
	}
	return f, &v, nil
}

// qualifiedConfiguration is the configuration of what qualified found.
func (s *Server) qualifiedConfiguration(r *http.Request, f projections.Function, v *projections.Version) lambdaConfiguration {
	if v == nil {
		return s.latestConfiguration(r, f)
	}
	return s.versionConfiguration(f, *v)
}

// lambdaFunction is the live function the path names, whatever the
// qualifier; on an error it has answered already.
func (s *Server) lambdaFunction(w http.ResponseWriter, r *http.Request, p httprouter.Params) (projections.Function, bool) {
	ref, _, err := lambdaName(r, p)
	if err != nil {
		s.writeLambdaError(w, r, err)
		return projections.Function{}, false
	}
	f, err := s.opts.Views.Function(ref)
	if err != nil {
		s.writeLambdaError(w, r, s.notFound(ref, err))
		return projections.Function{}, false
	}
	return f, true
}

// latestFunction is lambdaFunction for an operation on the function's
// $LATEST only: a qualifier that names another is refused, refusal saying
// why.
func (s *Server) latestFunction(w http.ResponseWriter, r *http.Request, p httprouter.Params, refusal string) (projections.Function, bool) {
	if _, qualifier, err := lambdaName(r, p); err == nil && qualifier != "" && qualifier != function.Latest {
		s.writeLambdaError(w, r, lambdaInvalid("%s", refusal))
		return projections.Function{}, false
	}
	return s.lambdaFunction(w, r, p)
}

// aliasNotFound words a missing alias as Lambda does.
func (s *Server) aliasNotFound(fnName, alias string, err error) error {
	if errors.Is(err, projections.ErrNotFound) {
		return lambdaError{http.StatusNotFound, "ResourceNotFoundException", "Alias not found: " + s.arn(fnName, alias)}
	}
	return err
}

// revisionID is what Lambda calls the revision of a function or an
// alias: it changes with every change.
func revisionID(id string, revision int) string {
	return fmt.Sprintf("%s-%d", strings.ToLower(id), revision)
}

// notFound words a missing function as Lambda does.
func (s *Server) notFound(what string, err error) error {
	if errors.Is(err, projections.ErrNotFound) {
		return lambdaError{http.StatusNotFound, "ResourceNotFoundException", "Function not found: " + s.arn(what)}
	}
	return err
}

type lambdaCreateBody struct {
	FunctionName string `json:"FunctionName"`
	PackageType  string `json:"PackageType"`
	Code         struct {
		ImageURI string `json:"ImageUri"`
		ZipFile  []byte `json:"ZipFile"`
		S3Bucket string `json:"S3Bucket"`
	} `json:"Code"`
	Role          string             `json:"Role"`
	Runtime       string             `json:"Runtime"`
	Handler       string             `json:"Handler"`
	Timeout       int                `json:"Timeout"`
	MemorySize    int                `json:"MemorySize"`
	Description   string             `json:"Description"`
	Publish       bool               `json:"Publish"`
	Environment   *lambdaEnvironment `json:"Environment"`
	ImageConfig   *lambdaImageConfig `json:"ImageConfig"`
	Architectures []string           `json:"Architectures"`
	Tags          map[string]string  `json:"Tags"`
}

// lambdaDecode reads a Lambda API body: unknown members are ignored, as
// AWS clients send members this server has no use for.
func (s *Server) lambdaDecode(w http.ResponseWriter, r *http.Request, v any) error {
	body, err := s.bodyOf(w, r)
	if err != nil {
		return wrapBody("the request body", err)
	}
	if len(body) == 0 {
		return nil
	}
	if err := json.Unmarshal(body, v); err != nil {
		return lambdaInvalid("the request body is not the JSON this operation takes: %v", err)
	}
	return nil
}

func (s *Server) lambdaCreate(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	var b lambdaCreateBody
	if err := s.lambdaDecode(w, r, &b); err != nil {
		s.writeLambdaError(w, r, err)
		return
	}
	zipped := b.PackageType == "Zip" || b.PackageType == "" && b.Code.ImageURI == ""
	switch {
	case b.Code.S3Bucket != "":
		s.writeLambdaError(w, r, lambdaInvalid("code in S3 is not supported: send the archive itself as Code.ZipFile (the CLI's --zip-file fileb://f.zip)"))
		return
	case b.PackageType != "" && b.PackageType != "Image" && b.PackageType != "Zip":
		s.writeLambdaError(w, r, lambdaInvalid("PackageType %.40q: Image or Zip", b.PackageType))
		return
	case zipped && b.Code.ImageURI != "", !zipped && len(b.Code.ZipFile) > 0:
		s.writeLambdaError(w, r, lambdaInvalid("a function is either a Zip package (Code.ZipFile) or an Image (Code.ImageUri), not both"))
		return
	case zipped && len(b.Code.ZipFile) == 0:
		s.writeLambdaError(w, r, lambdaInvalid("a Zip package needs Code.ZipFile (the CLI's --zip-file fileb://f.zip); an image, PackageType Image and Code.ImageUri"))
		return
	case !zipped && b.Runtime != "":
		s.writeLambdaError(w, r, lambdaInvalid("Runtime is a setting of Zip packages; an image carries its own runtime"))
		return
	}
	if slices.ContainsFunc(b.Architectures, func(a string) bool { return a != "x86_64" }) {
		s.writeLambdaError(w, r, lambdaInvalid("Architectures: only x86_64 is supported"))
		return
	}
	spec := function.Spec{
		Name: b.FunctionName, Image: b.Code.ImageURI, Timeout: b.Timeout, MemoryMB: b.MemorySize,
		Mode: function.ModeLambda, Handler: b.Handler, Description: b.Description, Role: b.Role,
	}
	if b.Environment != nil {
		spec.Env = b.Environment.Variables
	}
	if c := b.ImageConfig; c != nil {
		spec.Entrypoint, spec.Command, spec.WorkingDir = c.EntryPoint, c.Command, c.WorkingDirectory
	}
	// Tags are checked before anything is built or registered.
	if _, err := function.ChangeTags(nil, b.Tags, nil); err != nil {
		s.writeLambdaError(w, r, err)
		return
	}
	if zipped {
		var err error
		if spec, err = s.opts.Functions.BuildPackage(r.Context(), spec, b.Runtime, b.Code.ZipFile); err != nil {
			s.writeLambdaError(w, r, err)
			return
		}
	}
	f, err := s.opts.Functions.Register(r.Context(), spec)
	if err == nil && len(b.Tags) > 0 {
		f, err = s.opts.Functions.Tag(r.Context(), f.ID, b.Tags, nil)
	}
	if err != nil {
		s.writeLambdaError(w, r, err)
		return
	}
	s.answerChanged(w, r, f, b.Publish, http.StatusCreated)
}

// answerChanged answers a create or an update of f with its $LATEST
// configuration, or with the version it publishes when asked.
func (s *Server) answerChanged(w http.ResponseWriter, r *http.Request, f projections.Function, publish bool, status int) {
	if !publish {
		writeJSON(w, status, s.latestConfiguration(r, f))
		return
	}
	v, err := s.opts.Versions.PublishVersion(r.Context(), f.ID, function.Publish{})
	if err != nil {
		s.writeLambdaError(w, r, err)
		return
	}
	writeJSON(w, status, s.versionConfiguration(f, v))
}

func (s *Server) lambdaList(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	fns, err := s.opts.Views.Functions()
	if err != nil {
		s.writeLambdaError(w, r, err)
		return
	}
	slices.SortFunc(fns, func(a, b projections.Function) int { return cmp.Compare(a.Name, b.Name) })
	writeLambdaPage(s, w, r, "Functions", fns, func(f projections.Function) string { return f.Name },
		func(f projections.Function) lambdaConfiguration { return s.latestConfiguration(r, f) })
}

// writeLambdaPage answers a List operation: the page of items (see
// lambdaPage) under member, each as out makes it (only the page's items
// are made), and NextMarker when there is more.
func writeLambdaPage[T, O any](s *Server, w http.ResponseWriter, r *http.Request, member string, items []T, key func(T) string, out func(T) O) {
	page, next, err := lambdaPage(r, items, key)
	if err != nil {
		s.writeLambdaError(w, r, err)
		return
	}
	outs := make([]O, len(page))
	for i, t := range page {
		outs[i] = out(t)
	}
	body := map[string]any{member: outs}
	if next != "" {
		body["NextMarker"] = next
	}
	writeJSON(w, http.StatusOK, body)
}

// lambdaPage pages items, sorted by key, after ?Marker= (the key of the
// last item of the previous page), ?MaxItems= at a time (50 by default).
func lambdaPage[T any](r *http.Request, items []T, key func(T) string) ([]T, string, error) {
	max := 50
	if v := r.URL.Query().Get("MaxItems"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10000 {
			return nil, "", lambdaInvalid("MaxItems must be between 1 and 10000")
		}
		max = n
	}
	if m := r.URL.Query().Get("Marker"); m != "" {
		i := slices.IndexFunc(items, func(t T) bool { return key(t) > m })
		if i < 0 {
			i = len(items)
		}
		items = items[i:]
	}
	if len(items) > max {
		return items[:max], key(items[max-1]), nil
	}
	return items, "", nil
}

func (s *Server) lambdaGet(w http.ResponseWriter, r *http.Request, p httprouter.Params) {
	ref, qualifier, err := lambdaName(r, p)
	if err != nil {
		s.writeLambdaError(w, r, err)
		return
	}
	f, v, err := s.qualified(ref, qualifier)
	if err != nil {
		s.writeLambdaError(w, r, err)
		return
	}
	c, image := s.qualifiedConfiguration(r, f, v), f.Image
	if v != nil {
		image = v.Image
	}
	code := map[string]string{"RepositoryType": "ECR", "ImageUri": image, "ResolvedImageUri": image + "@sha256:" + c.CodeSha256}
	if c.PackageType == "Zip" {
		// The archive is not kept, only the image built from it.
		code = map[string]string{"RepositoryType": "S3"}
	}
	writeJSON(w, http.StatusOK, map[string]any{"Configuration": c, "Code": code, "Tags": tagsOf(f), "Concurrency": concurrencyOf(f)})
}

func (s *Server) lambdaGetConfiguration(w http.ResponseWriter, r *http.Request, p httprouter.Params) {
	ref, qualifier, err := lambdaName(r, p)
	if err == nil {
		var f projections.Function
		var v *projections.Version
		if f, v, err = s.qualified(ref, qualifier); err == nil {
			writeJSON(w, http.StatusOK, s.qualifiedConfiguration(r, f, v))
			return
		}
	}
	s.writeLambdaError(w, r, err)
}

// lambdaUpdate applies patch to the function the path names ($LATEST),
// publishes when asked, and answers with the configuration.
func (s *Server) lambdaUpdate(w http.ResponseWriter, r *http.Request, p httprouter.Params, patch function.Patch, publish bool) {
	if f, ok := s.latestFunction(w, r, p, onlyLatest); ok {
		s.answerUpdate(w, r, f, publish, func() (projections.Function, error) { return s.opts.Functions.Update(r.Context(), f.ID, patch) })
	}
}

// onlyLatest refuses a change of a published version.
const onlyLatest = "only $LATEST can be changed; published versions never change"

// answerUpdate makes the change of f that change does and answers with
// the configuration, or the version published when asked.
func (s *Server) answerUpdate(w http.ResponseWriter, r *http.Request, f projections.Function, publish bool, change func() (projections.Function, error)) {
	changed, err := change()
	if err != nil {
		s.writeLambdaError(w, r, s.notFound(f.Name, err))
		return
	}
	s.answerChanged(w, r, changed, publish, http.StatusOK)
}

func (s *Server) lambdaUpdateCode(w http.ResponseWriter, r *http.Request, p httprouter.Params) {
	var b struct {
		ImageURI string `json:"ImageUri"`
		ZipFile  []byte `json:"ZipFile"`
		S3Bucket string `json:"S3Bucket"`
		Publish  bool   `json:"Publish"`
	}
	if err := s.lambdaDecode(w, r, &b); err != nil {
		s.writeLambdaError(w, r, err)
		return
	}
	switch {
	case b.S3Bucket != "":
		s.writeLambdaError(w, r, lambdaInvalid("code in S3 is not supported: send the archive itself as ZipFile (the CLI's --zip-file fileb://f.zip)"))
		return
	case b.ImageURI != "" && len(b.ZipFile) > 0, b.ImageURI == "" && len(b.ZipFile) == 0:
		s.writeLambdaError(w, r, lambdaInvalid("give either ZipFile, for a Zip package, or ImageUri, for an Image"))
		return
	}
	f, ok := s.latestFunction(w, r, p, onlyLatest)
	switch {
	case !ok:
	case b.ImageURI != "" && f.Package != nil:
		s.writeLambdaError(w, r, lambdaInvalid("function %s is a Zip package: update its code with ZipFile", f.Name))
	case b.ImageURI != "":
		s.answerUpdate(w, r, f, b.Publish, func() (projections.Function, error) {
			return s.opts.Functions.Update(r.Context(), f.ID, function.Patch{Image: &b.ImageURI})
		})
	default:
		s.answerUpdate(w, r, f, b.Publish, func() (projections.Function, error) {
			return s.opts.Functions.UpdatePackage(r.Context(), f.ID, b.ZipFile)
		})
	}
}

func (s *Server) lambdaUpdateConfiguration(w http.ResponseWriter, r *http.Request, p httprouter.Params) {
	var b struct {
		Role        *string            `json:"Role"`
		Handler     *string            `json:"Handler"`
		Description *string            `json:"Description"`
		Timeout     *int               `json:"Timeout"`
		MemorySize  *int               `json:"MemorySize"`
		Environment *lambdaEnvironment `json:"Environment"`
		ImageConfig *lambdaImageConfig `json:"ImageConfig"`
	}
	if err := s.lambdaDecode(w, r, &b); err != nil {
		s.writeLambdaError(w, r, err)
		return
	}
	patch := function.Patch{Role: b.Role, Handler: b.Handler, Description: b.Description, Timeout: b.Timeout, MemoryMB: b.MemorySize}
	if b.Environment != nil {
		env := b.Environment.Variables
		if env == nil {
			env = map[string]string{}
		}
		patch.Env = &env
	}
	if c := b.ImageConfig; c != nil {
		patch.Entrypoint, patch.Command, patch.WorkingDir = &c.EntryPoint, &c.Command, &c.WorkingDirectory
	}
	s.lambdaUpdate(w, r, p, patch, false)
}

func (s *Server) lambdaDelete(w http.ResponseWriter, r *http.Request, p httprouter.Params) {
	ref, qualifier, err := lambdaName(r, p)
	switch {
	case err != nil:
	case qualifier == function.Latest:
		// As Lambda: $LATEST goes only with the function.
		err = lambdaInvalid("$LATEST cannot be deleted on its own: delete the function, without a qualifier, and it goes with all its versions")
	case qualifier != "":
		err = lambdaInvalid("deleting one version is not supported (Qualifier %.130q): delete the function, without a qualifier, and it goes with all its versions", qualifier)
	}
	if err == nil {
		if err = s.opts.Functions.Delete(r.Context(), ref); err == nil {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		err = s.notFound(ref, err)
	}
	s.writeLambdaError(w, r, err)
}

func (s *Server) lambdaPublish(w http.ResponseWriter, r *http.Request, p httprouter.Params) {
	var b struct {
		Description string `json:"Description"`
		CodeSha256  string `json:"CodeSha256"`
		RevisionID  string `json:"RevisionId"`
	}
	f, ok := s.lambdaFunction(w, r, p)
	if !ok {
		return
	}
	if err := s.lambdaDecode(w, r, &b); err != nil {
		s.writeLambdaError(w, r, err)
		return
	}
	if b.RevisionID != "" && b.RevisionID != revisionID(f.ID, f.Version) {
		s.writeLambdaError(w, r, lambdaError{http.StatusPreconditionFailed, "PreconditionFailedException", "the RevisionId does not match the function's latest revision"})
		return
	}
	// The runner checks CodeSha256 against the image it would freeze,
	// before it publishes anything.
	v, err := s.opts.Versions.PublishVersion(r.Context(), f.ID, function.Publish{Description: b.Description, ImageDigest: b.CodeSha256})
	if err != nil {
		s.writeLambdaError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, s.versionConfiguration(f, v))
}

func (s *Server) lambdaListVersions(w http.ResponseWriter, r *http.Request, p httprouter.Params) {
	f, ok := s.lambdaFunction(w, r, p)
	if !ok {
		return
	}
	vs, err := s.opts.Versions.Versions(f.ID)
	if err != nil {
		s.writeLambdaError(w, r, err)
		return
	}
	// $LATEST (version 0 here) first, then the versions in order: keys
	// that sort that way.
	all := append([]projections.Version{{}}, vs...)
	writeLambdaPage(s, w, r, "Versions", all, func(v projections.Version) string { return fmt.Sprintf("%010d", v.Number) },
		func(v projections.Version) lambdaConfiguration {
			if v.Number == 0 {
				return s.latestConfiguration(r, f)
			}
			return s.versionConfiguration(f, v)
		})
}
