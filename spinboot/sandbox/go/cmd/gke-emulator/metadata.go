package main

// The GKE metadata server: what a pod of a Workload Identity cluster reaches at 169.254.169.254 to get its Google
// service account's access token (https://cloud.google.com/kubernetes-engine/docs/concepts/workload-identity#metadata_server).
// The sandbox has no per-pod network, so each (cluster, namespace, Kubernetes service account) gets its own
// loopback listener, registered through the admin endpoint, and a pod of that service account is given its
// host:port as GCE_METADATA_HOST (the variable google-auth and Google's Go client read).
//
// At every token request it checks what GKE's does, and refuses with the reason otherwise: Workload Identity is on
// for the cluster and its nodes run the GKE metadata server, the Kubernetes service account is annotated
// iam.gke.io/gcp-service-account with a Google service account that exists, and that account's IAM policy lets
// serviceAccount:POOL[NS/KSA] act as it (roles/iam.workloadIdentityUser, i.e. iam.serviceAccounts.getAccessToken;
// https://cloud.google.com/kubernetes-engine/docs/how-to/workload-identity#kubernetes-sa-to-iam). The token is a
// sandbox identity token (sandboxsrv.MintToken) that every Google stand-in verifies and evaluates IAM for.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/container/apiv1/containerpb"

	"spinboot.dev/sandbox/internal/sandboxsrv"
)

// GKEAdminEnv is set, for the provisioning commands, to this server's admin URL, so gkebacking can register the
// Halyard pod's identity while it creates a cluster.
const GKEAdminEnv = "SPINBOOT_SANDBOX_GKE_ADMIN"

const (
	ksaAnnotation = "iam.gke.io/gcp-service-account"
	wiUserPerm    = "iam.serviceAccounts.getAccessToken" // what roles/iam.workloadIdentityUser grants
	cloudPlatform = "https://www.googleapis.com/auth/cloud-platform"
)

var k8sNameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$`)

type identityKey struct {
	Cluster        string `json:"cluster"` // PROJECT-LOCATION-NAME, as the provisioning commands name it
	Namespace      string `json:"namespace"`
	ServiceAccount string `json:"serviceAccount"`
}

type metadataServer struct {
	gke  *container
	iam  *iamAdmin
	gate *sandboxsrv.Gate

	mu      sync.Mutex
	hosts   map[identityKey]string
	clients map[string]*http.Client // by CA PEM: one connection pool per backing control plane
}

// registerMetadata adds POST/GET /metadata/identities to the admin endpoint and exports its URL to the
// provisioning commands. A gate without a role table refuses every token (no permission can be shown).
func registerMetadata(srv *sandboxsrv.Server, gke *container, iam *iamAdmin) {
	gate, err := sandboxsrv.GateFromEnv()
	if err != nil {
		log.Fatal(err)
	}
	m := &metadataServer{gke: gke, iam: iam, gate: gate, hosts: map[identityKey]string{}, clients: map[string]*http.Client{}}
	srv.AdminEnv = GKEAdminEnv
	srv.Admin.HandleFunc("/metadata/identities", m.admin)
}

func (m *metadataServer) admin(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
		m.mu.Lock()
		out := []map[string]string{}
		for k, h := range m.hosts {
			out = append(out, map[string]string{"cluster": k.Cluster, "namespace": k.Namespace, "serviceAccount": k.ServiceAccount, "host": h})
		}
		m.mu.Unlock()
		metaJSON(w, http.StatusOK, out)
	case http.MethodPost:
		var k identityKey
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&k); err != nil || k.Cluster == "" ||
			!k8sNameRE.MatchString(k.Namespace) || !k8sNameRE.MatchString(k.ServiceAccount) {
			http.Error(w, `want JSON {"cluster": "PROJECT-LOCATION-NAME", "namespace": NS, "serviceAccount": KSA}`, http.StatusBadRequest)
			return
		}
		host, err := m.listen(k)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		metaJSON(w, http.StatusOK, map[string]string{"host": host})
	default:
		http.Error(w, "GET or POST", http.StatusMethodNotAllowed)
	}
}

// listen returns the identity's host, starting its listener on first registration (idempotent). Listeners live
// as long as the emulator: a cluster deleted and created again under the same name gets the same host back.
func (m *metadataServer) listen(k identityKey) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if h, ok := m.hosts[k]; ok {
		return h, nil
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { m.serve(k, w, r) }),
		ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(lis) }()
	m.hosts[k] = lis.Addr().String()
	log.Printf("metadata server for %s %s/%s on %s", k.Cluster, k.Namespace, k.ServiceAccount, lis.Addr())
	return lis.Addr().String(), nil
}

func metaJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// serve answers the metadata paths Google's client libraries use. Every answer carries Metadata-Flavor: Google
// (google-auth's ping checks it); a request without that header is refused, as on GCE and GKE, so a page fetched
// through a redirect or an SSRF cannot read tokens
// (https://cloud.google.com/compute/docs/metadata/querying-metadata#rest).
func (m *metadataServer) serve(k identityKey, w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Metadata-Flavor", "Google")
	if r.Header.Get("Metadata-Flavor") != "Google" {
		http.Error(w, `Missing required header "Metadata-Flavor": "Google"`, http.StatusForbidden)
		return
	}
	text := func(s string) {
		w.Header().Set("Content-Type", "application/text")
		_, _ = io.WriteString(w, s)
	}
	path := r.URL.Path
	if path == "/" || path == "/computeMetadata/v1/" {
		text("computeMetadata/\n")
		return
	}
	rest, ok := strings.CutPrefix(path, "/computeMetadata/v1/")
	if !ok {
		http.NotFound(w, r)
		return
	}
	cl, why, code := m.cluster(k)
	if cl == nil {
		http.Error(w, why, code)
		return
	}
	switch rest {
	case "project/project-id":
		text(cl.project)
		return
	case "project/numeric-project-id":
		text(projectNumber(cl.project))
		return
	case "instance/attributes/cluster-name":
		text(cl.name)
		return
	case "instance/attributes/cluster-location":
		text(cl.location)
		return
	}
	acct, leaf, ok := strings.Cut(strings.TrimPrefix(rest, "instance/service-accounts/"), "/")
	if !strings.HasPrefix(rest, "instance/service-accounts/") || !ok {
		http.NotFound(w, r)
		return
	}
	// The email needs only the annotation; a token needs the whole chain (GKE checks the binding when it
	// exchanges the Kubernetes token, so a missing binding shows up at the token request).
	email, why, code := m.resolve(r.Context(), k, cl, leaf == "token")
	if email == "" {
		log.Printf("metadata %s %s/%s: %s refused: %s", k.Cluster, k.Namespace, k.ServiceAccount, rest, why)
		http.Error(w, why, code)
		return
	}
	if acct != "default" && acct != email {
		http.NotFound(w, r)
		return
	}
	switch leaf {
	case "":
		if r.URL.Query().Get("recursive") == "true" {
			metaJSON(w, http.StatusOK, map[string]any{"aliases": []string{"default"}, "email": email, "scopes": []string{cloudPlatform}})
		} else {
			text("aliases\nemail\nidentity\nscopes\ntoken\n")
		}
	case "email":
		text(email)
	case "scopes":
		text(cloudPlatform + "\n")
	case "aliases":
		text("default\n")
	case "token":
		metaJSON(w, http.StatusOK, map[string]any{"access_token": sandboxsrv.MintToken(m.gate.Secret, email),
			"expires_in": 3599, "token_type": "Bearer"})
	default:
		http.NotFound(w, r)
	}
}

type clusterView struct {
	project, location, name, pool string
	gkeMetadata                   bool
	prov                          provisioned
}

// cluster finds the GKE cluster an identity belongs to and checks that its pods reach the GKE metadata server.
func (m *metadataServer) cluster(k identityKey) (*clusterView, string, int) {
	m.gke.mu.Lock()
	var v *clusterView
	for _, c := range m.gke.clusters {
		if fmt.Sprintf("%s-%s-%s", c.project, c.location, c.c.Name) != k.Cluster {
			continue
		}
		v = &clusterView{project: c.project, location: c.location, name: c.c.Name, pool: c.c.GetWorkloadIdentityConfig().GetWorkloadPool()}
		if c.provision != nil {
			v.prov = *c.provision
		}
		for _, np := range c.c.NodePools {
			v.gkeMetadata = v.gkeMetadata || np.GetConfig().GetWorkloadMetadataConfig().GetMode() == containerpb.WorkloadMetadataConfig_GKE_METADATA
		}
	}
	m.gke.mu.Unlock()
	switch {
	case v == nil:
		return nil, fmt.Sprintf("There is no GKE cluster %s in the sandbox (was it deleted?).", k.Cluster), http.StatusNotFound
	case v.pool == "":
		return nil, fmt.Sprintf("Workload Identity is not enabled on cluster %s (workload_identity_config.workload_pool is unset): its pods would get the node's service account, never a Google service account of their own.", v.name), http.StatusForbidden
	case !v.gkeMetadata:
		return nil, fmt.Sprintf("No node pool of cluster %s runs the GKE metadata server (workload_metadata_config.mode GKE_METADATA): its pods would get the node's service account.", v.name), http.StatusForbidden
	}
	return v, "", 0
}

// resolve returns the Google service account the identity acts as, or why not and the HTTP status to answer.
func (m *metadataServer) resolve(ctx context.Context, k identityKey, cl *clusterView, forToken bool) (email, why string, code int) {
	ksa := k.Namespace + "/" + k.ServiceAccount
	ann, found, err := m.annotation(ctx, cl, k)
	switch {
	case err != nil:
		return "", fmt.Sprintf("cannot read Kubernetes service account %s from cluster %s: %v", ksa, cl.name, err), http.StatusInternalServerError
	case !found:
		return "", fmt.Sprintf("Kubernetes service account %s does not exist in cluster %s.", ksa, cl.name), http.StatusForbidden
	case ann == "":
		// On GKE an unannotated service account gets a federated token for the pool principal, which nothing
		// spinboot grants; the sandbox refuses at once so the missing annotation is named.
		return "", fmt.Sprintf("Kubernetes service account %s is not annotated %s: annotate it with the Google service account its pods act as.", ksa, ksaAnnotation), http.StatusForbidden
	case !forToken:
		return ann, "", 0
	}
	m.iam.mu.Lock()
	_, exists := m.iam.accounts[ann]
	m.iam.mu.Unlock()
	if !exists {
		return "", fmt.Sprintf("Unable to generate access token; IAM returned 404 Not Found: Requested entity was not found.\nThe Google service account %s named by the annotation %s on %s does not exist.", ann, ksaAnnotation, ksa), http.StatusForbidden
	}
	member := fmt.Sprintf("serviceAccount:%s[%s]", cl.pool, ksa)
	if !m.gate.Allowed(member, wiUserPerm, "sa:"+ann, m.iam.policies.Get("sa:"+ann)) {
		return "", fmt.Sprintf("Unable to generate access token; IAM returned 403 Forbidden: The caller does not have permission\n"+
			"This error could be caused by a missing IAM policy binding on the target IAM service account.\n"+
			"The IAM policy of %s does not grant roles/iam.workloadIdentityUser to %s.\n"+
			"For more information, refer to the Workload Identity documentation:\n\thttps://cloud.google.com/kubernetes-engine/docs/how-to/workload-identity#authenticating_to", ann, member), http.StatusForbidden
	}
	return ann, "", 0
}

// annotation reads the service account's Workload Identity annotation from the backing control plane, as the
// cluster admin (the sandbox's admin token is a static token of every sandbox API server).
func (m *metadataServer) annotation(ctx context.Context, cl *clusterView, k identityKey) (ann string, found bool, err error) {
	server := cl.prov.apiServer
	if server == "" && cl.prov.endpoint != "" {
		server = "https://" + cl.prov.endpoint
	}
	if server == "" {
		return "", false, fmt.Errorf("the cluster has no control plane yet")
	}
	client, err := m.client(cl.prov.caPEM)
	if err != nil {
		return "", false, err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	u := fmt.Sprintf("%s/api/v1/namespaces/%s/serviceaccounts/%s", strings.TrimRight(server, "/"), url.PathEscape(k.Namespace), url.PathEscape(k.ServiceAccount))
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	req.Header.Set("Authorization", "Bearer "+m.gate.Secret)
	resp, err := client.Do(req)
	if err != nil {
		return "", false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return "", false, nil
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return "", false, fmt.Errorf("HTTP %d: %s", resp.StatusCode, b)
	}
	var sa struct {
		Metadata struct {
			Annotations map[string]string `json:"annotations"`
		} `json:"metadata"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&sa); err != nil {
		return "", false, err
	}
	return strings.TrimSpace(sa.Metadata.Annotations[ksaAnnotation]), true, nil
}

func (m *metadataServer) client(caPEM string) (*http.Client, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c, ok := m.clients[caPEM]; ok {
		return c, nil
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(caPEM)) {
		return nil, fmt.Errorf("the cluster's CA certificate does not parse")
	}
	c := &http.Client{Transport: &http.Transport{Proxy: nil, TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	m.clients[caPEM] = c
	return c, nil
}
