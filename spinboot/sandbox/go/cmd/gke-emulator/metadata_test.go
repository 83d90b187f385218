package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/container/apiv1/containerpb"
	"cloud.google.com/go/iam/admin/apiv1/adminpb"
	"cloud.google.com/go/iam/apiv1/iampb"

	"spinboot.dev/sandbox/internal/sandboxsrv"
)

func TestMetadataServer(t *testing.T) {
	const secret = "admin-token"
	roles := filepath.Join(t.TempDir(), "roles.json")
	_ = os.WriteFile(roles, []byte(`{"roles": {"roles/iam.workloadIdentityUser": {"permissions": ["iam.serviceAccounts.getAccessToken"]}}}`), 0o600)
	t.Setenv(sandboxsrv.SecretEnv, secret)
	t.Setenv(sandboxsrv.RolesEnv, roles)

	// The backing control plane's service account API, behind TLS, answering only the admin token.
	var mu sync.Mutex
	annotations := map[string]string{}
	kube := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+secret {
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
			return
		}
		if r.URL.Path != "/api/v1/namespaces/halyard/serviceaccounts/halyard" {
			http.NotFound(w, r)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		_ = json.NewEncoder(w).Encode(map[string]any{"metadata": map[string]any{"name": "halyard", "annotations": annotations}})
	}))
	defer kube.Close()
	caPEM := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: kube.Certificate().Raw}))

	gke := newContainer(context.Background(), time.Millisecond, "1.36", &provisioner{})
	iam := newIAMAdmin()
	gke.clusters["acme/us-central1-b/spinnaker"] = &cluster{loc: loc{"acme-platform", "us-central1-b"},
		c: &containerpb.Cluster{Name: "spinnaker", WorkloadIdentityConfig: &containerpb.WorkloadIdentityConfig{WorkloadPool: "acme-platform.svc.id.goog"},
			NodePools: []*containerpb.NodePool{{Name: "default", Config: &containerpb.NodeConfig{
				WorkloadMetadataConfig: &containerpb.WorkloadMetadataConfig{Mode: containerpb.WorkloadMetadataConfig_GKE_METADATA}}}}},
		provision: &provisioned{apiServer: kube.URL, caPEM: caPEM}}
	srv, err := sandboxsrv.New("gke-emulator", &sandboxsrv.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	registerMetadata(srv, gke, iam)
	admin := httptest.NewServer(srv.Admin)
	defer admin.Close()

	register := func() string {
		resp, err := http.Post(admin.URL+"/metadata/identities", "application/json",
			strings.NewReader(`{"cluster": "acme-platform-us-central1-b-spinnaker", "namespace": "halyard", "serviceAccount": "halyard"}`))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out struct{ Host string }
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return out.Host
	}
	host := register()
	if host == "" || register() != host {
		t.Fatalf("registration is not idempotent: %q", host)
	}
	get := func(path string, flavor bool) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, "http://"+host+path, nil)
		if flavor {
			req.Header.Set("Metadata-Flavor", "Google")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.Header.Get("Metadata-Flavor") != "Google" {
			t.Errorf("%s: no Metadata-Flavor header in the answer", path)
		}
		return resp.StatusCode, string(b)
	}
	const tokenPath = "/computeMetadata/v1/instance/service-accounts/default/token"
	expect := func(wantCode int, want string) {
		t.Helper()
		code, body := get(tokenPath, true)
		if code != wantCode || !strings.Contains(body, want) {
			t.Errorf("token: %d %q, want %d containing %q", code, body, wantCode, want)
		}
	}
	if code, _ := get(tokenPath, false); code != http.StatusForbidden {
		t.Errorf("no Metadata-Flavor header: %d, want 403", code)
	}
	if code, body := get("/computeMetadata/v1/project/project-id", true); code != 200 || body != "acme-platform" {
		t.Errorf("project-id: %d %q", code, body)
	}
	expect(http.StatusForbidden, "is not annotated iam.gke.io/gcp-service-account")

	email := "spinnaker@acme-platform.iam.gserviceaccount.com"
	mu.Lock()
	annotations["iam.gke.io/gcp-service-account"] = email
	mu.Unlock()
	expect(http.StatusForbidden, "does not exist")
	if _, err := iam.CreateServiceAccount(context.Background(), &adminpb.CreateServiceAccountRequest{Name: "projects/acme-platform", AccountId: "spinnaker"}); err != nil {
		t.Fatal(err)
	}
	expect(http.StatusForbidden, "does not grant roles/iam.workloadIdentityUser to serviceAccount:acme-platform.svc.id.goog[halyard/halyard]")
	if code, body := get("/computeMetadata/v1/instance/service-accounts/default/email", true); code != 200 || body != email {
		t.Errorf("email (needs only the annotation): %d %q", code, body)
	}
	gke.wiPools["acme-platform.svc.id.goog"] = true
	if _, err := iam.SetIamPolicy(context.Background(), &iampb.SetIamPolicyRequest{Resource: "projects/-/serviceAccounts/" + email,
		Policy: &iampb.Policy{Bindings: []*iampb.Binding{{Role: "roles/iam.workloadIdentityUser",
			Members: []string{"serviceAccount:acme-platform.svc.id.goog[halyard/halyard]"}}}}}); err != nil {
		t.Fatal(err)
	}
	code, body := get(tokenPath, true)
	var tok struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
		ExpiresIn   int    `json:"expires_in"`
	}
	_ = json.NewDecoder(bytes.NewReader([]byte(body))).Decode(&tok)
	if got, ok := sandboxsrv.VerifyToken(secret, tok.AccessToken); code != 200 || !ok || got != email || tok.TokenType != "Bearer" || tok.ExpiresIn <= 0 {
		t.Fatalf("token with the whole chain: %d %s", code, body)
	}
	if code, body := get("/computeMetadata/v1/instance/service-accounts/default/?recursive=true", true); code != 200 || !strings.Contains(body, email) {
		t.Errorf("recursive service account info: %d %s", code, body)
	}

	// Workload Identity off on the cluster: its pods would get the node's identity.
	gke.mu.Lock()
	gke.clusters["acme/us-central1-b/spinnaker"].c.WorkloadIdentityConfig = nil
	gke.mu.Unlock()
	expect(http.StatusForbidden, "Workload Identity is not enabled")
}
