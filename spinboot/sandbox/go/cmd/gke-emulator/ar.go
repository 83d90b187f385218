package main

// A minimal Artifact Registry: google.devtools.artifactregistry.v1.ArtifactRegistry (repositories and their IAM
// policies) on the shared gRPC port, and the Docker Registry HTTP API v2 (token exchange, tags list, manifests) on a
// second loopback listener, so Spinnaker's docker-registry accounts and Halyard's validation of them have something
// real to talk to. Images are pushed through the admin endpoint (the sandbox has no docker client); a push
// publishes Artifact Registry's Pub/Sub notification to projects/<project>/topics/gcr as the real service does
// (https://cloud.google.com/artifact-registry/docs/configure-notifications).

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/artifactregistry/apiv1/artifactregistrypb"
	"cloud.google.com/go/iam/apiv1/iampb"
	"cloud.google.com/go/longrunning/autogen/longrunningpb"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"spinboot.dev/sandbox/internal/sandboxsrv"
)

var registryPort = flag.Int("registry-port", 0, "Docker Registry v2 HTTP port on 127.0.0.1 (0 = pick a free one; GET <admin>/registry tells)")

var (
	// https://cloud.google.com/artifact-registry/docs/repositories/create-repos: lowercase letters, digits and
	// hyphens, starting with a letter, ending with a letter or digit, at most 63 characters.
	repoIDRE = regexp.MustCompile(`^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$`)
	// Artifact Registry locations are regions and the multi-regions us, europe, asia (no zones).
	arMultiRegions = map[string]bool{"us": true, "europe": true, "asia": true}
	// gcr.io domains are served by Artifact Registry repositories named after the domain
	// (https://cloud.google.com/artifact-registry/docs/transition/gcr-repositories).
	gcrDomains = map[string]string{"gcr.io": "us", "us.gcr.io": "us", "eu.gcr.io": "europe", "asia.gcr.io": "asia"}
	// Docker's tag grammar (distribution/reference).
	tagRE = regexp.MustCompile(`^[\w][\w.-]{0,127}$`)
)

const (
	permDownload   = "artifactregistry.repositories.downloadArtifacts"
	manifestV2Type = "application/vnd.docker.distribution.manifest.v2+json"
)

type arImage struct {
	tags      map[string]string // tag -> digest
	manifests map[string][]byte // digest -> manifest
}

type arRepo struct {
	r      *artifactregistrypb.Repository
	images map[string]*arImage // image path inside the repository ("tasks", "team/api")
}

type regToken struct {
	operator bool
	member   string          // "" with operator=false: anonymous
	scopes   map[string]bool // image paths (HOST/PATH) the token may pull
	expires  time.Time
}

type artifactRegistry struct {
	artifactregistrypb.UnimplementedArtifactRegistryServer
	mu       sync.Mutex
	repos    map[string]*arRepo // key: projects/P/locations/L/repositories/R
	policies *sandboxsrv.PolicyStore
	proj     *projects
	roles    *sandboxsrv.Roles
	secret   string
	url      string // the Docker registry's base URL
	tokens   map[string]regToken
	pubsub   *grpc.ClientConn // nil without PUBSUB_EMULATOR_HOST
}

func newArtifactRegistry(proj *projects, roles *sandboxsrv.Roles, secret string) *artifactRegistry {
	a := &artifactRegistry{repos: map[string]*arRepo{}, policies: sandboxsrv.NewPolicyStore(), proj: proj,
		roles: roles, secret: secret, tokens: map[string]regToken{}}
	// A repository policy takes Artifact Registry roles, basic roles and custom roles; anything else is refused with
	// INVALID_ARGUMENT as the real API does.
	a.policies.RoleOK = func(_, role string) bool {
		switch role {
		case "roles/owner", "roles/editor", "roles/viewer":
			return true
		}
		return strings.HasPrefix(role, "roles/artifactregistry.") || strings.Contains(role, "/roles/")
	}
	a.policies.MemberCheck = proj.policies.MemberCheck // a deleted or unknown service account is refused, as by IAM
	return a
}

// registerArtifactRegistry wires the gRPC service, the Docker registry listener and the admin routes
// (GET /registry, POST /registry/push).
func registerArtifactRegistry(srv *sandboxsrv.Server, proj *projects) *artifactRegistry {
	roles, err := sandboxsrv.LoadRolesFromEnv()
	if err != nil {
		log.Fatalf("role table: %v", err)
	}
	a := newArtifactRegistry(proj, roles, os.Getenv(sandboxsrv.SecretEnv))
	if h := os.Getenv("PUBSUB_EMULATOR_HOST"); h != "" {
		if cc, err := grpc.NewClient(h, grpc.WithTransportCredentials(insecure.NewCredentials())); err == nil {
			a.pubsub = cc
		}
	}
	artifactregistrypb.RegisterArtifactRegistryServer(srv.GRPC, a)
	lis, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", *registryPort))
	if err != nil {
		log.Fatalf("registry listener: %v", err)
	}
	a.url = "http://" + lis.Addr().String()
	go func() { _ = (&http.Server{Handler: a, ReadHeaderTimeout: 10 * time.Second}).Serve(lis) }()
	srv.Admin.HandleFunc("/registry", func(w http.ResponseWriter, _ *http.Request) {
		writeJSONStatus(w, http.StatusOK, map[string]string{"url": a.url})
	})
	srv.Admin.HandleFunc("/registry/push", a.adminPush)
	log.Printf("gke-emulator: Docker registry on %s", a.url)
	return a
}

// --- names and IAM ---------------------------------------------------------------------------------------------

func parseARRepoName(name string) (project, location, id string, err error) {
	p := strings.Split(name, "/")
	if len(p) != 6 || p[0] != "projects" || p[2] != "locations" || p[4] != "repositories" || p[1] == "" || p[3] == "" || p[5] == "" {
		return "", "", "", status.Errorf(codes.InvalidArgument, "Invalid repository name %q: want projects/PROJECT/locations/LOCATION/repositories/REPOSITORY.", name)
	}
	return p[1], p[3], p[5], nil
}

func parseARParent(parent string) (project, location string, err error) {
	p := strings.Split(parent, "/")
	if len(p) != 4 || p[0] != "projects" || p[2] != "locations" || p[1] == "" || p[3] == "" {
		return "", "", status.Errorf(codes.InvalidArgument, "Invalid parent %q: want projects/PROJECT/locations/LOCATION.", parent)
	}
	if !regionRE.MatchString(p[3]) && !arMultiRegions[p[3]] {
		return "", "", status.Errorf(codes.InvalidArgument, "Invalid location %q: Artifact Registry locations are regions (us-central1) or multi-regions (us, europe, asia).", p[3])
	}
	return p[1], p[3], nil
}

// policiesFor lists the policies IAM evaluates for a repository: its own (if it exists), then its project's.
func (a *artifactRegistry) policiesFor(repoName string) []namedPolicy {
	project, _, _, _ := parseARRepoName(repoName)
	var out []namedPolicy
	a.mu.Lock()
	_, exists := a.repos[repoName]
	a.mu.Unlock()
	if exists {
		out = append(out, namedPolicy{full: "//artifactregistry.googleapis.com/" + repoName, policy: a.policies.Get(repoName)})
	}
	return append(out, projectPolicy(a.proj, project))
}

// authorize checks a gRPC caller: the operator may do anything; an identity needs perm on the resource (a repository
// or, for create/list, a parent); anything else is UNAUTHENTICATED. Wording as Google's PERMISSION_DENIED.
func (a *artifactRegistry) authorize(ctx context.Context, perm, resource string) error {
	c := sandboxsrv.CallerFromContext(ctx, a.secret)
	if c.Invalid {
		return errUnauthenticated
	}
	if c.Operator() {
		return nil
	}
	var pols []namedPolicy
	if strings.Contains(resource, "/repositories/") {
		pols = a.policiesFor(resource)
	} else {
		project, _, _ := strings.Cut(strings.TrimPrefix(resource, "projects/"), "/")
		pols = []namedPolicy{projectPolicy(a.proj, project)}
	}
	if explain(a.roles, c.Member, perm, pols).Access == granted {
		return nil
	}
	return status.Error(codes.PermissionDenied, a.deniedText(perm, "'//artifactregistry.googleapis.com/"+resource+"'"))
}

// errUnauthenticated is Google's answer to a token it cannot verify.
var errUnauthenticated = status.Error(codes.Unauthenticated, sandboxsrv.UnauthenticatedMessage)

// deniedText is Google's PERMISSION_DENIED wording, with the roles that would grant the permission appended so a
// failing sandbox run says what to grant.
func (a *artifactRegistry) deniedText(perm, resource string) string {
	msg := fmt.Sprintf("Permission '%s' denied on resource %s (or it may not exist).", perm, resource)
	if r := a.roles.RolesWith(perm); len(r) > 0 {
		msg += " Roles that hold it: " + strings.Join(r, ", ") + "."
	}
	return msg
}

// --- gRPC: repositories ----------------------------------------------------------------------------------------

func (a *artifactRegistry) lookup(name string) (*arRepo, error) {
	if _, _, _, err := parseARRepoName(name); err != nil {
		return nil, err
	}
	r, ok := a.repos[name]
	if !ok {
		return nil, status.Error(codes.NotFound, "Requested entity was not found.")
	}
	return r, nil
}

func doneOperation(parent string, resp proto.Message) *longrunningpb.Operation {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	meta, _ := anypb.New(&artifactregistrypb.OperationMetadata{})
	res, _ := anypb.New(resp)
	// The real API returns a running operation to poll; one already done is a valid Operation and every client
	// (api_core's operation future included) returns its result without polling.
	return &longrunningpb.Operation{Name: parent + "/operations/" + hex.EncodeToString(b), Metadata: meta, Done: true,
		Result: &longrunningpb.Operation_Response{Response: res}}
}

func (a *artifactRegistry) CreateRepository(ctx context.Context, req *artifactregistrypb.CreateRepositoryRequest) (*longrunningpb.Operation, error) {
	project, location, err := parseARParent(req.GetParent())
	if err != nil {
		return nil, err
	}
	if _, err := a.proj.resolve("projects/" + project); err != nil {
		return nil, err
	}
	id := req.GetRepositoryId()
	if _, gcr := gcrDomains[id]; !(gcr && gcrDomains[id] == location) && !repoIDRE.MatchString(id) {
		return nil, status.Errorf(codes.InvalidArgument, "Invalid repository ID %q: must start with a lowercase letter, contain only lowercase letters, numbers and hyphens, end with a letter or number, and be at most 63 characters.", id)
	}
	in := req.GetRepository()
	if in.GetFormat() == artifactregistrypb.Repository_FORMAT_UNSPECIFIED {
		return nil, status.Error(codes.InvalidArgument, "Repository format must be specified.")
	}
	if err := a.authorize(ctx, "artifactregistry.repositories.create", req.GetParent()); err != nil {
		return nil, err
	}
	name := req.GetParent() + "/repositories/" + id
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, exists := a.repos[name]; exists {
		return nil, status.Error(codes.AlreadyExists, "the repository already exists")
	}
	r := proto.Clone(in).(*artifactregistrypb.Repository)
	r.Name = name
	if r.Mode == artifactregistrypb.Repository_MODE_UNSPECIFIED {
		r.Mode = artifactregistrypb.Repository_STANDARD_REPOSITORY
	}
	now := timestamppb.Now()
	r.CreateTime, r.UpdateTime = now, now
	if r.Format == artifactregistrypb.Repository_DOCKER {
		r.RegistryUri = fmt.Sprintf("%s-docker.pkg.dev/%s/%s", location, project, id)
		if _, gcr := gcrDomains[id]; gcr {
			r.RegistryUri = id + "/" + project
		}
	}
	a.repos[name] = &arRepo{r: r, images: map[string]*arImage{}}
	return doneOperation(req.GetParent(), r), nil
}

func (a *artifactRegistry) GetRepository(ctx context.Context, req *artifactregistrypb.GetRepositoryRequest) (*artifactregistrypb.Repository, error) {
	if err := a.authorize(ctx, "artifactregistry.repositories.get", req.GetName()); err != nil {
		return nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	r, err := a.lookup(req.GetName())
	if err != nil {
		return nil, err
	}
	return proto.Clone(r.r).(*artifactregistrypb.Repository), nil
}

func (a *artifactRegistry) ListRepositories(ctx context.Context, req *artifactregistrypb.ListRepositoriesRequest) (*artifactregistrypb.ListRepositoriesResponse, error) {
	if _, _, err := parseARParent(req.GetParent()); err != nil {
		return nil, err
	}
	if req.GetFilter() != "" || req.GetOrderBy() != "" {
		return nil, status.Error(codes.InvalidArgument, "filter and order_by are not supported by the sandbox's Artifact Registry.")
	}
	if err := a.authorize(ctx, "artifactregistry.repositories.list", req.GetParent()); err != nil {
		return nil, err
	}
	a.mu.Lock()
	var names []string
	for n := range a.repos {
		if strings.HasPrefix(n, req.GetParent()+"/repositories/") {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	start := 0
	if t := req.GetPageToken(); t != "" {
		n, err := strconv.Atoi(t)
		if err != nil || n < 0 || n > len(names) {
			a.mu.Unlock()
			return nil, status.Errorf(codes.InvalidArgument, "Invalid page token %q.", t)
		}
		start = n
	}
	size := int(req.GetPageSize())
	if size <= 0 || size > 1000 {
		size = 1000
	}
	end := min(start+size, len(names))
	resp := &artifactregistrypb.ListRepositoriesResponse{}
	for _, n := range names[start:end] {
		resp.Repositories = append(resp.Repositories, proto.Clone(a.repos[n].r).(*artifactregistrypb.Repository))
	}
	a.mu.Unlock()
	if end < len(names) {
		resp.NextPageToken = strconv.Itoa(end)
	}
	return resp, nil
}

func (a *artifactRegistry) DeleteRepository(ctx context.Context, req *artifactregistrypb.DeleteRepositoryRequest) (*longrunningpb.Operation, error) {
	if err := a.authorize(ctx, "artifactregistry.repositories.delete", req.GetName()); err != nil {
		return nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, err := a.lookup(req.GetName()); err != nil {
		return nil, err
	}
	delete(a.repos, req.GetName())
	a.policies.Delete(req.GetName())
	return doneOperation(req.GetName()[:strings.Index(req.GetName(), "/repositories/")], &emptypb.Empty{}), nil
}

// --- gRPC: IAM --------------------------------------------------------------------------------------------------

func (a *artifactRegistry) exists(name string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, err := a.lookup(name)
	return err
}

func (a *artifactRegistry) GetIamPolicy(ctx context.Context, req *iampb.GetIamPolicyRequest) (*iampb.Policy, error) {
	if err := a.authorize(ctx, "artifactregistry.repositories.getIamPolicy", req.GetResource()); err != nil {
		return nil, err
	}
	if err := a.exists(req.GetResource()); err != nil {
		return nil, err
	}
	return a.policies.Get(req.GetResource()), nil
}

func (a *artifactRegistry) SetIamPolicy(ctx context.Context, req *iampb.SetIamPolicyRequest) (*iampb.Policy, error) {
	if err := a.authorize(ctx, "artifactregistry.repositories.setIamPolicy", req.GetResource()); err != nil {
		return nil, err
	}
	if err := a.exists(req.GetResource()); err != nil {
		return nil, err
	}
	return a.policies.Set(req.GetResource(), req.GetPolicy(), req.GetUpdateMask().GetPaths())
}

// TestIamPermissions needs no permission itself; it answers for the caller: everything Artifact Registry for the
// operator, what the policies grant for an identity.
func (a *artifactRegistry) TestIamPermissions(ctx context.Context, req *iampb.TestIamPermissionsRequest) (*iampb.TestIamPermissionsResponse, error) {
	c := sandboxsrv.CallerFromContext(ctx, a.secret)
	if c.Invalid {
		return nil, errUnauthenticated
	}
	if err := a.exists(req.GetResource()); err != nil {
		return nil, err
	}
	got, err := sandboxsrv.GrantedPermissions(req.GetPermissions(), "artifactregistry.")
	if err != nil || c.Operator() {
		return &iampb.TestIamPermissionsResponse{Permissions: got}, err
	}
	pols := a.policiesFor(req.GetResource())
	var held []string
	for _, p := range got {
		if explain(a.roles, c.Member, p, pols).Access == granted {
			held = append(held, p)
		}
	}
	return &iampb.TestIamPermissionsResponse{Permissions: held}, nil
}

// --- Docker Registry HTTP API v2 -------------------------------------------------------------------------------

// target maps a registry host and an image path to its repository and the image path inside it:
// LOCATION-docker.pkg.dev/PROJECT/REPOSITORY/IMAGE... and gcr.io/PROJECT/IMAGE... (repository "gcr.io").
func target(host, path string) (repo, image string, ok bool) {
	host = regHost(host)
	parts := strings.Split(path, "/")
	if loc, isGCR := gcrDomains[host]; isGCR && len(parts) >= 2 {
		return fmt.Sprintf("projects/%s/locations/%s/repositories/%s", parts[0], loc, host), strings.Join(parts[1:], "/"), true
	}
	if loc, isAR := strings.CutSuffix(host, "-docker.pkg.dev"); isAR && len(parts) >= 3 {
		return fmt.Sprintf("projects/%s/locations/%s/repositories/%s", parts[0], loc, parts[1]), strings.Join(parts[2:], "/"), true
	}
	return "", "", false
}

// regHost is a Host header or token service as a registry name: lowercase, without port.
func regHost(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return strings.ToLower(host)
}

// registryError writes the Docker Registry API's error form (distribution spec, "Error codes").
func registryError(w http.ResponseWriter, code int, ecode, msg string) {
	writeJSONStatus(w, code, map[string]any{"errors": []map[string]string{{"code": ecode, "message": msg}}})
}

func writeJSONStatus(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func (a *artifactRegistry) challenge(w http.ResponseWriter, host, scope string) {
	c := fmt.Sprintf(`Bearer realm="%s/v2/token",service="%s"`, a.url, regHost(host))
	if scope != "" {
		c += fmt.Sprintf(`,scope="%s"`, scope)
	}
	w.Header().Set("WWW-Authenticate", c)
	registryError(w, http.StatusUnauthorized, "UNAUTHORIZED", "authentication required")
}

// basicCaller reads Basic oauth2accesstoken:<token> (Artifact Registry's access-token login,
// https://cloud.google.com/artifact-registry/docs/docker/authentication#token). ok=false: bad credentials.
func (a *artifactRegistry) basicCaller(r *http.Request) (tok regToken, present, ok bool) {
	user, pass, present := r.BasicAuth()
	if !present {
		return regToken{}, false, true // anonymous
	}
	if user != "oauth2accesstoken" || pass == "" {
		return regToken{}, true, false
	}
	if a.secret != "" && pass == a.secret {
		return regToken{operator: true}, true, true
	}
	if email, valid := sandboxsrv.VerifyToken(a.secret, pass); valid {
		return regToken{member: "serviceAccount:" + email}, true, true
	}
	return regToken{}, true, false
}

func (a *artifactRegistry) mayPull(t regToken, repo string) bool {
	return t.operator || explain(a.roles, t.member, permDownload, a.policiesFor(repo)).Access == granted
}

func (a *artifactRegistry) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	p := strings.TrimPrefix(r.URL.Path, "/v2/")
	switch {
	case r.URL.Path == "/v2/" || r.URL.Path == "/v2":
		t, ok := a.bearer(r)
		_, basic, valid := a.basicCaller(r)
		if (ok && t.expires.After(time.Now())) || (basic && valid) {
			writeJSONStatus(w, http.StatusOK, map[string]any{})
			return
		}
		a.challenge(w, r.Host, "")
	case r.URL.Path == "/v2/token":
		a.token(w, r)
	case strings.HasSuffix(p, "/tags/list") && r.Method == http.MethodGet:
		a.read(w, r, strings.TrimSuffix(p, "/tags/list"), "")
	case strings.Contains(p, "/manifests/") && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		i := strings.LastIndex(p, "/manifests/")
		a.read(w, r, p[:i], p[i+len("/manifests/"):])
	default:
		registryError(w, http.StatusNotFound, "UNSUPPORTED", "the sandbox registry serves /v2/, /v2/token, tags/list and manifests only")
	}
}

func (a *artifactRegistry) bearer(r *http.Request) (regToken, bool) {
	h := r.Header.Get("Authorization")
	if len(h) < 7 || !strings.EqualFold(h[:7], "bearer ") {
		return regToken{}, false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	t, ok := a.tokens[strings.TrimSpace(h[7:])]
	return t, ok
}

// token is the Docker token exchange. The pull grant is checked here (as Artifact Registry answers 403 at the
// exchange) and again on every read, so a grant removed later takes effect at once.
func (a *artifactRegistry) token(w http.ResponseWriter, r *http.Request) {
	caller, _, ok := a.basicCaller(r)
	if !ok {
		registryError(w, http.StatusUnauthorized, "UNAUTHORIZED", "invalid credentials: want Basic oauth2accesstoken:<access token>")
		return
	}
	host := r.URL.Query().Get("service")
	if host == "" {
		host = r.Host
	}
	caller.scopes = map[string]bool{}
	for _, sc := range r.URL.Query()["scope"] {
		f := strings.Split(sc, ":")
		if len(f) != 3 || f[0] != "repository" || !strings.Contains(","+f[2]+",", ",pull,") {
			continue // push and other actions are never granted by the sandbox
		}
		repo, _, valid := target(host, f[1])
		if !valid {
			registryError(w, http.StatusNotFound, "NAME_UNKNOWN", fmt.Sprintf("unknown registry host or path %s/%s", host, f[1]))
			return
		}
		if !a.mayPull(caller, repo) {
			registryError(w, http.StatusForbidden, "DENIED", a.denied(repo))
			return
		}
		caller.scopes[regHost(host)+"/"+f[1]] = true
	}
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	tok := "sbxreg." + base64.RawURLEncoding.EncodeToString(b)
	now := time.Now()
	caller.expires = now.Add(time.Hour)
	a.mu.Lock()
	for k, t := range a.tokens {
		if t.expires.Before(now) {
			delete(a.tokens, k)
		}
	}
	a.tokens[tok] = caller
	a.mu.Unlock()
	writeJSONStatus(w, http.StatusOK, map[string]any{"token": tok, "access_token": tok, "expires_in": 3600,
		"issued_at": now.UTC().Format(time.RFC3339)})
}

// denied is Artifact Registry's Docker API wording for a missing read grant (or a missing repository, which the
// caller must not learn about): `denied: Permission "…downloadArtifacts" denied on resource "projects/…" (or it
// may not exist)` as docker prints it.
func (a *artifactRegistry) denied(repo string) string {
	return strings.ReplaceAll(a.deniedText(permDownload, `"`+repo+`"`), "'"+permDownload+"'", `"`+permDownload+`"`)
}

// read serves tags/list (ref == "") and manifests/<ref> for an authorised caller.
func (a *artifactRegistry) read(w http.ResponseWriter, r *http.Request, path, ref string) {
	scope := "repository:" + path + ":pull"
	repoName, image, ok := target(r.Host, path)
	if !ok {
		registryError(w, http.StatusNotFound, "NAME_UNKNOWN", fmt.Sprintf("unknown registry host or path %s/%s (want LOCATION-docker.pkg.dev/PROJECT/REPOSITORY/IMAGE in the Host header and path)", r.Host, path))
		return
	}
	t, hasBearer := a.bearer(r)
	switch {
	case hasBearer && t.expires.After(time.Now()):
		if !t.operator && !t.scopes[regHost(r.Host)+"/"+path] {
			a.challenge(w, r.Host, scope) // a token for another repository: ask for one with this scope
			return
		}
	case r.Header.Get("Authorization") != "" && !hasBearer:
		var present, valid bool
		if t, present, valid = a.basicCaller(r); !present || !valid {
			a.challenge(w, r.Host, scope)
			return
		}
	default:
		a.challenge(w, r.Host, scope)
		return
	}
	if !a.mayPull(t, repoName) {
		registryError(w, http.StatusForbidden, "DENIED", a.denied(repoName))
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	repo, ok := a.repos[repoName]
	img := (*arImage)(nil)
	if ok {
		img = repo.images[image]
	}
	if img == nil {
		registryError(w, http.StatusNotFound, "NAME_UNKNOWN", fmt.Sprintf("Repository %q not found", path))
		return
	}
	if ref == "" {
		a.tagsList(w, r, path, img)
		return
	}
	digest := ref
	if !strings.HasPrefix(ref, "sha256:") {
		digest = img.tags[ref]
	}
	body, ok := img.manifests[digest]
	if !ok {
		registryError(w, http.StatusNotFound, "MANIFEST_UNKNOWN", fmt.Sprintf("Failed to fetch %q from request \"/v2/%s/manifests/%s\".", ref, path, ref))
		return
	}
	w.Header().Set("Content-Type", manifestV2Type)
	w.Header().Set("Docker-Content-Digest", digest)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	if r.Method == http.MethodGet {
		_, _ = w.Write(body)
	}
}

// tagsList answers GET /v2/<name>/tags/list with the spec's pagination (n, last, Link header).
func (a *artifactRegistry) tagsList(w http.ResponseWriter, r *http.Request, path string, img *arImage) {
	tags := []string{}
	last := r.URL.Query().Get("last")
	for t := range img.tags {
		if t > last {
			tags = append(tags, t)
		}
	}
	sort.Strings(tags)
	if n, err := strconv.Atoi(r.URL.Query().Get("n")); err == nil && n >= 0 && n < len(tags) {
		tags = tags[:n]
		if n > 0 {
			w.Header().Set("Link", fmt.Sprintf(`</v2/%s/tags/list?n=%d&last=%s>; rel="next"`, path, n, tags[n-1]))
		}
	}
	writeJSONStatus(w, http.StatusOK, map[string]any{"name": path, "tags": tags})
}

// --- admin: push -----------------------------------------------------------------------------------------------

// adminPush: POST {"host", "path", "tag", "digest"?} tags a new image (or, with digest, an existing manifest of the
// same image) in an existing repository and publishes the notification. Answers {"digest", "tag", "published"}.
func (a *artifactRegistry) adminPush(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST", http.StatusMethodNotAllowed)
		return
	}
	var in struct{ Host, Path, Tag, Digest string }
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&in); err != nil {
		http.Error(w, "bad JSON: "+err.Error(), http.StatusBadRequest)
		return
	}
	repoName, image, ok := target(in.Host, in.Path)
	if !ok || !tagRE.MatchString(in.Tag) {
		http.Error(w, fmt.Sprintf("want host LOCATION-docker.pkg.dev (or gcr.io), path PROJECT/REPOSITORY/IMAGE and a Docker tag; got %q %q %q", in.Host, in.Path, in.Tag), http.StatusBadRequest)
		return
	}
	ref := regHost(in.Host) + "/" + in.Path
	a.mu.Lock()
	repo, ok := a.repos[repoName]
	if !ok || repo.r.Format != artifactregistrypb.Repository_DOCKER {
		a.mu.Unlock()
		http.Error(w, fmt.Sprintf("no Docker repository %s: create it first (CreateRepository)", repoName), http.StatusNotFound)
		return
	}
	img := repo.images[image]
	if img == nil {
		img = &arImage{tags: map[string]string{}, manifests: map[string][]byte{}}
		repo.images[image] = img
	}
	digest := in.Digest
	if digest == "" {
		cfg := sha256.Sum256([]byte(fmt.Sprintf("%s:%s@%d", ref, in.Tag, time.Now().UnixNano())))
		body, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": manifestV2Type, "layers": []any{},
			"config": map[string]any{"mediaType": "application/vnd.docker.container.image.v1+json", "size": 2,
				"digest": "sha256:" + hex.EncodeToString(cfg[:])}})
		sum := sha256.Sum256(body)
		digest = "sha256:" + hex.EncodeToString(sum[:])
		img.manifests[digest] = body
	} else if _, known := img.manifests[digest]; !known {
		a.mu.Unlock()
		http.Error(w, fmt.Sprintf("digest %s is not a manifest of %s", digest, ref), http.StatusNotFound)
		return
	}
	img.tags[in.Tag] = digest
	repo.r.UpdateTime = timestamppb.Now()
	a.mu.Unlock()
	project, _, _, _ := parseARRepoName(repoName)
	msg := map[string]string{"action": "INSERT", "digest": ref + "@" + digest, "tag": ref + ":" + in.Tag}
	published, err := a.publish(r.Context(), project, msg)
	out := map[string]any{"digest": digest, "tag": msg["tag"], "published": published}
	if err != nil {
		out["publish_error"] = err.Error()
	}
	writeJSONStatus(w, http.StatusOK, out)
}

// publish sends the notification to projects/<project>/topics/gcr; no Pub/Sub or no topic: nothing to do, as
// Artifact Registry publishes only when the topic exists.
func (a *artifactRegistry) publish(ctx context.Context, project string, msg map[string]string) (bool, error) {
	if a.pubsub == nil {
		return false, nil
	}
	data, _ := json.Marshal(msg)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err := pubsubpb.NewPublisherClient(a.pubsub).Publish(ctx, &pubsubpb.PublishRequest{
		Topic: "projects/" + project + "/topics/gcr", Messages: []*pubsubpb.PubsubMessage{{Data: data}}})
	if status.Code(err) == codes.NotFound {
		return false, nil
	}
	return err == nil, err
}
