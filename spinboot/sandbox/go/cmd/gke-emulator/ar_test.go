package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"cloud.google.com/go/artifactregistry/apiv1/artifactregistrypb"
	"cloud.google.com/go/iam/apiv1/iampb"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"cloud.google.com/go/pubsub/v2/pstest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"spinboot.dev/sandbox/internal/sandboxsrv"
)

const (
	testSecret = "test-admin-token"
	testRepo   = "projects/acme-platform/locations/us/repositories/images"
	spinnaker  = "spinnaker@acme-platform.iam.gserviceaccount.com"
)

func testRoles(t *testing.T) *sandboxsrv.Roles {
	t.Helper()
	doc := map[string]any{"roles": map[string]any{
		"roles/artifactregistry.reader": map[string]any{"permissions": []string{"artifactregistry.repositories.downloadArtifacts", "artifactregistry.repositories.get"}},
		"roles/pubsub.subscriber":       map[string]any{"permissions": []string{"pubsub.subscriptions.consume"}},
		"roles/storage.objectViewer":    map[string]any{"permissions": []string{"storage.objects.get", "storage.objects.list"}},
	}}
	p := filepath.Join(t.TempDir(), "roles.json")
	b, _ := json.Marshal(doc)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := sandboxsrv.LoadRoles(p)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func newTestAR(t *testing.T) *artifactRegistry {
	proj := &projects{known: map[string]bool{}, policies: sandboxsrv.NewPolicyStore()}
	return newArtifactRegistry(proj, testRoles(t), testSecret)
}

func asIdentity(email string) context.Context {
	return metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+sandboxsrv.MintToken(testSecret, email)))
}

func wantCode(t *testing.T, err error, c codes.Code, contains string) {
	t.Helper()
	if status.Code(err) != c || !strings.Contains(status.Convert(err).Message(), contains) {
		t.Fatalf("got %v, want %v containing %q", err, c, contains)
	}
}

func mustCreate(t *testing.T, a *artifactRegistry, name string) {
	t.Helper()
	i := strings.Index(name, "/repositories/")
	op, err := a.CreateRepository(context.Background(), &artifactregistrypb.CreateRepositoryRequest{
		Parent: name[:i], RepositoryId: name[i+len("/repositories/"):], Repository: &artifactregistrypb.Repository{Format: artifactregistrypb.Repository_DOCKER}})
	if err != nil {
		t.Fatal(err)
	}
	r := &artifactregistrypb.Repository{}
	if !op.Done || op.GetResponse().UnmarshalTo(r) != nil || r.Name != name {
		t.Fatalf("operation %v", op)
	}
}

func grant(t *testing.T, a *artifactRegistry, repo, role, member string) {
	t.Helper()
	p := a.policies.Get(repo)
	p.Bindings = append(p.Bindings, &iampb.Binding{Role: role, Members: []string{member}})
	if _, err := a.policies.Set(repo, p, nil); err != nil {
		t.Fatal(err)
	}
}

func TestRepositoryLifecycle(t *testing.T) {
	a, ctx := newTestAR(t), context.Background()
	mustCreate(t, a, testRepo)
	r, err := a.GetRepository(ctx, &artifactregistrypb.GetRepositoryRequest{Name: testRepo})
	if err != nil || r.RegistryUri != "us-docker.pkg.dev/acme-platform/images" || r.Mode != artifactregistrypb.Repository_STANDARD_REPOSITORY {
		t.Fatalf("get: %v %v", r, err)
	}
	_, err = a.CreateRepository(ctx, &artifactregistrypb.CreateRepositoryRequest{Parent: "projects/acme-platform/locations/us", RepositoryId: "images",
		Repository: &artifactregistrypb.Repository{Format: artifactregistrypb.Repository_DOCKER}})
	wantCode(t, err, codes.AlreadyExists, "the repository already exists")
	for _, bad := range []*artifactregistrypb.CreateRepositoryRequest{
		{Parent: "projects/acme-platform/locations/us-central1-b", RepositoryId: "x", Repository: &artifactregistrypb.Repository{Format: artifactregistrypb.Repository_DOCKER}},
		{Parent: "projects/acme-platform/locations/us", RepositoryId: "Bad_Name", Repository: &artifactregistrypb.Repository{Format: artifactregistrypb.Repository_DOCKER}},
		{Parent: "projects/acme-platform/locations/us", RepositoryId: "noformat"},
	} {
		_, err = a.CreateRepository(ctx, bad)
		wantCode(t, err, codes.InvalidArgument, "")
	}
	mustCreate(t, a, "projects/acme-platform/locations/us/repositories/gcr.io") // gcr.io domains are repositories too
	list, err := a.ListRepositories(ctx, &artifactregistrypb.ListRepositoriesRequest{Parent: "projects/acme-platform/locations/us", PageSize: 1})
	if err != nil || len(list.Repositories) != 1 || list.NextPageToken == "" {
		t.Fatalf("list: %v %v", list, err)
	}
	if _, err := a.DeleteRepository(ctx, &artifactregistrypb.DeleteRepositoryRequest{Name: testRepo}); err != nil {
		t.Fatal(err)
	}
	_, err = a.GetRepository(ctx, &artifactregistrypb.GetRepositoryRequest{Name: testRepo})
	wantCode(t, err, codes.NotFound, "Requested entity was not found.")
	_, err = a.GetRepository(ctx, &artifactregistrypb.GetRepositoryRequest{Name: "projects/acme-platform/images"})
	wantCode(t, err, codes.InvalidArgument, "")
}

func TestRepositoryIAM(t *testing.T) {
	a, ctx := newTestAR(t), context.Background()
	_, err := a.GetIamPolicy(ctx, &iampb.GetIamPolicyRequest{Resource: testRepo})
	wantCode(t, err, codes.NotFound, "")
	mustCreate(t, a, testRepo)
	p, err := a.GetIamPolicy(ctx, &iampb.GetIamPolicyRequest{Resource: testRepo})
	if err != nil {
		t.Fatal(err)
	}
	_, err = a.SetIamPolicy(ctx, &iampb.SetIamPolicyRequest{Resource: testRepo, Policy: &iampb.Policy{Bindings: []*iampb.Binding{{Role: "roles/storage.admin", Members: []string{"serviceAccount:" + spinnaker}}}}})
	wantCode(t, err, codes.InvalidArgument, "roles/storage.admin")
	p.Bindings = []*iampb.Binding{{Role: "roles/artifactregistry.reader", Members: []string{"serviceAccount:" + spinnaker}}}
	p2, err := a.SetIamPolicy(ctx, &iampb.SetIamPolicyRequest{Resource: testRepo, Policy: p})
	if err != nil || string(p2.Etag) == string(p.Etag) {
		t.Fatalf("set: %v %v", p2, err)
	}
	_, err = a.SetIamPolicy(ctx, &iampb.SetIamPolicyRequest{Resource: testRepo, Policy: p}) // stale etag
	wantCode(t, err, codes.Aborted, "concurrent policy changes")
}

func TestRepositoryAPIEnforcesIAMForIdentities(t *testing.T) {
	a := newTestAR(t)
	mustCreate(t, a, testRepo)
	_, err := a.GetRepository(asIdentity(spinnaker), &artifactregistrypb.GetRepositoryRequest{Name: testRepo})
	wantCode(t, err, codes.PermissionDenied, "Permission 'artifactregistry.repositories.get' denied on resource '//artifactregistry.googleapis.com/"+testRepo+"' (or it may not exist).")
	grant(t, a, testRepo, "roles/artifactregistry.reader", "serviceAccount:"+spinnaker)
	if _, err := a.GetRepository(asIdentity(spinnaker), &artifactregistrypb.GetRepositoryRequest{Name: testRepo}); err != nil {
		t.Fatal(err)
	}
	got, err := a.TestIamPermissions(asIdentity(spinnaker), &iampb.TestIamPermissionsRequest{Resource: testRepo,
		Permissions: []string{permDownload, "artifactregistry.repositories.delete"}})
	if err != nil || len(got.Permissions) != 1 || got.Permissions[0] != permDownload {
		t.Fatalf("test permissions: %v %v", got, err)
	}
	bad := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer sbx1.Zm9v.00"))
	_, err = a.GetRepository(bad, &artifactregistrypb.GetRepositoryRequest{Name: testRepo})
	wantCode(t, err, codes.Unauthenticated, "")
}

// registry serves the Docker API on a test server; requests carry the registry host in Host, as DNS would route.
type registry struct {
	t   *testing.T
	a   *artifactRegistry
	srv *httptest.Server
}

func newRegistry(t *testing.T, a *artifactRegistry) *registry {
	srv := httptest.NewServer(a)
	t.Cleanup(srv.Close)
	a.url = srv.URL
	return &registry{t, a, srv}
}

func (r *registry) do(method, path, auth string) (*http.Response, map[string]any) {
	req, _ := http.NewRequest(method, r.srv.URL+path, nil)
	req.Host = "us-docker.pkg.dev"
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp, body
}

func basic(tok string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte("oauth2accesstoken:"+tok))
}

func (r *registry) push(path, tag string) (int, map[string]any) {
	body, _ := json.Marshal(map[string]string{"host": "us-docker.pkg.dev", "path": path, "tag": tag})
	rec := httptest.NewRecorder()
	r.a.adminPush(rec, httptest.NewRequest(http.MethodPost, "/registry/push", strings.NewReader(string(body))))
	var out map[string]any
	_ = json.Unmarshal(rec.Body.Bytes(), &out)
	return rec.Code, out
}

func errCode(body map[string]any) string {
	errs, _ := body["errors"].([]any)
	if len(errs) == 0 {
		return ""
	}
	return errs[0].(map[string]any)["code"].(string)
}

func TestDockerRegistry(t *testing.T) {
	a := newTestAR(t)
	reg := newRegistry(t, a)
	if code, _ := reg.push("acme-platform/images/tasks", "v1"); code != http.StatusNotFound {
		t.Fatalf("push into a missing repository: %d", code)
	}
	mustCreate(t, a, testRepo)
	for _, tag := range []string{"v2", "v1"} {
		if code, out := reg.push("acme-platform/images/tasks", tag); code != http.StatusOK || !strings.HasPrefix(out["digest"].(string), "sha256:") {
			t.Fatalf("push: %d %v", code, out)
		}
	}

	resp, _ := reg.do("GET", "/v2/", "")
	if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") != `Bearer realm="`+reg.srv.URL+`/v2/token",service="us-docker.pkg.dev"` {
		t.Fatalf("/v2/ challenge: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	tokenPath := "/v2/token?service=us-docker.pkg.dev&scope=repository:acme-platform/images/tasks:pull"
	id := sandboxsrv.MintToken(testSecret, spinnaker)
	resp, body := reg.do("GET", tokenPath, basic(id))
	if resp.StatusCode != 403 || errCode(body) != "DENIED" || !strings.Contains(body["errors"].([]any)[0].(map[string]any)["message"].(string),
		`Permission "artifactregistry.repositories.downloadArtifacts" denied on resource "`+testRepo+`" (or it may not exist)`) {
		t.Fatalf("token without grant: %d %v", resp.StatusCode, body)
	}
	if resp, _ := reg.do("GET", tokenPath, basic("sbx1.forged.00")); resp.StatusCode != 401 {
		t.Fatalf("forged token: %d", resp.StatusCode)
	}

	grant(t, a, testRepo, "roles/artifactregistry.reader", "serviceAccount:"+spinnaker)
	resp, body = reg.do("GET", tokenPath, basic(id))
	if resp.StatusCode != 200 {
		t.Fatalf("token: %d %v", resp.StatusCode, body)
	}
	bearer := "Bearer " + body["token"].(string)
	resp, body = reg.do("GET", "/v2/acme-platform/images/tasks/tags/list", bearer)
	if resp.StatusCode != 200 || body["name"] != "acme-platform/images/tasks" || len(body["tags"].([]any)) != 2 || body["tags"].([]any)[0] != "v1" {
		t.Fatalf("tags/list: %d %v", resp.StatusCode, body)
	}
	resp, _ = reg.do("HEAD", "/v2/acme-platform/images/tasks/manifests/v1", bearer)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Docker-Content-Digest"), "sha256:") {
		t.Fatalf("manifest HEAD: %d %v", resp.StatusCode, resp.Header)
	}
	if resp, body = reg.do("GET", "/v2/acme-platform/images/tasks/manifests/nope", bearer); resp.StatusCode != 404 || errCode(body) != "MANIFEST_UNKNOWN" {
		t.Fatalf("missing manifest: %d %v", resp.StatusCode, body)
	}
	// A token is scoped: another image needs its own token.
	if resp, _ = reg.do("GET", "/v2/acme-platform/images/other/tags/list", bearer); resp.StatusCode != 401 ||
		!strings.Contains(resp.Header.Get("WWW-Authenticate"), `scope="repository:acme-platform/images/other:pull"`) {
		t.Fatalf("out of scope: %d", resp.StatusCode)
	}
	// A missing image, read with the operator's token: NAME_UNKNOWN.
	if resp, body = reg.do("GET", "/v2/acme-platform/images/other/tags/list", basic(testSecret)); resp.StatusCode != 404 || errCode(body) != "NAME_UNKNOWN" {
		t.Fatalf("missing image: %d %v", resp.StatusCode, body)
	}
	// The grant is checked again on every read: taking it away refuses the next read with the same token.
	if _, err := a.policies.Set(testRepo, &iampb.Policy{}, nil); err != nil {
		t.Fatal(err)
	}
	if resp, body = reg.do("GET", "/v2/acme-platform/images/tasks/tags/list", bearer); resp.StatusCode != 403 || errCode(body) != "DENIED" {
		t.Fatalf("after revoke: %d %v", resp.StatusCode, body)
	}
	// A project-level grant works too (IAM inheritance).
	pp := a.proj.policies.Get("acme-platform")
	pp.Bindings = []*iampb.Binding{{Role: "roles/artifactregistry.reader", Members: []string{"serviceAccount:" + spinnaker}}}
	if _, err := a.proj.policies.Set("acme-platform", pp, nil); err != nil {
		t.Fatal(err)
	}
	if resp, _ = reg.do("GET", "/v2/acme-platform/images/tasks/tags/list", bearer); resp.StatusCode != 200 {
		t.Fatalf("project grant: %d", resp.StatusCode)
	}
}

func TestPushPublishesNotification(t *testing.T) {
	ps := pstest.NewServer()
	t.Cleanup(func() { _ = ps.Close() })
	cc, err := grpc.NewClient(ps.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	a := newTestAR(t)
	a.pubsub = cc
	reg := newRegistry(t, a)
	mustCreate(t, a, testRepo)
	// No gcr topic yet: the push succeeds and nothing is published, as on GCP.
	if code, out := reg.push("acme-platform/images/tasks", "v1"); code != 200 || out["published"] != false || out["publish_error"] != nil {
		t.Fatalf("push without topic: %d %v", code, out)
	}
	ctx := context.Background()
	if _, err := pubsubpb.NewPublisherClient(cc).CreateTopic(ctx, &pubsubpb.Topic{Name: "projects/acme-platform/topics/gcr"}); err != nil {
		t.Fatal(err)
	}
	sub := &pubsubpb.Subscription{Name: "projects/acme-platform/subscriptions/spinnaker-gcr", Topic: "projects/acme-platform/topics/gcr"}
	if _, err := pubsubpb.NewSubscriberClient(cc).CreateSubscription(ctx, sub); err != nil {
		t.Fatal(err)
	}
	code, out := reg.push("acme-platform/images/tasks", "v2")
	if code != 200 || out["published"] != true {
		t.Fatalf("push: %d %v", code, out)
	}
	pulled, err := pubsubpb.NewSubscriberClient(cc).Pull(ctx, &pubsubpb.PullRequest{Subscription: sub.Name, MaxMessages: 10})
	if err != nil || len(pulled.ReceivedMessages) != 1 {
		t.Fatalf("pull: %v %v", pulled, err)
	}
	var msg map[string]string
	_ = json.Unmarshal(pulled.ReceivedMessages[0].Message.Data, &msg)
	want := map[string]string{"action": "INSERT", "tag": "us-docker.pkg.dev/acme-platform/images/tasks:v2",
		"digest": "us-docker.pkg.dev/acme-platform/images/tasks@" + out["digest"].(string)}
	for k, v := range want {
		if msg[k] != v {
			t.Fatalf("message %v, want %v", msg, want)
		}
	}
}

func TestTarget(t *testing.T) {
	for _, c := range []struct{ host, path, repo, image string }{
		{"us-docker.pkg.dev", "p1/r1/a/b", "projects/p1/locations/us/repositories/r1", "a/b"},
		{"europe-west1-docker.pkg.dev:443", "p1/r1/img", "projects/p1/locations/europe-west1/repositories/r1", "img"},
		{"gcr.io", "p1/img", "projects/p1/locations/us/repositories/gcr.io", "img"},
		{"eu.gcr.io", "p1/img", "projects/p1/locations/europe/repositories/eu.gcr.io", "img"},
	} {
		repo, image, ok := target(c.host, c.path)
		if !ok || repo != c.repo || image != c.image {
			t.Errorf("target(%q, %q) = %q %q %v", c.host, c.path, repo, image, ok)
		}
	}
	for _, c := range [][2]string{{"us-docker.pkg.dev", "p1/r1"}, {"ghcr.io", "a/b/c"}} {
		if _, _, ok := target(c[0], c[1]); ok {
			t.Errorf("target(%q, %q) accepted", c[0], c[1])
		}
	}
}
