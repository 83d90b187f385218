package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/iam/admin/apiv1/adminpb"
	"cloud.google.com/go/iam/apiv1/iampb"
	"cloud.google.com/go/resourcemanager/apiv3/resourcemanagerpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"

	"spinboot.dev/sandbox/internal/sandboxsrv"
)

var (
	accountIDRE = regexp.MustCompile(`^[a-z]([-a-z0-9]*[a-z0-9])$`)
	saEmailRE   = regexp.MustCompile(`^[a-z]([-a-z0-9]*[a-z0-9])@([a-z][-a-z0-9]{4,28}[a-z0-9])\.iam\.gserviceaccount\.com$`)
	wiMemberRE  = regexp.MustCompile(`^serviceAccount:([a-z][-a-z0-9]{4,28}[a-z0-9]\.svc\.id\.goog)\[[^/\]]+/[^/\]]+\]$`)
)

// iamAdmin implements the service-account half of google.iam.admin.v1.IAM (what spinboot uses), sharing
// state with the project IAM and GKE servers so cross-checks behave like Google's.
type iamAdmin struct {
	adminpb.UnimplementedIAMServer
	mu       sync.Mutex
	accounts map[string]*adminpb.ServiceAccount // key: email
	created  map[string]time.Time               // key: email
	policies *sandboxsrv.PolicyStore            // resource key: "sa:" + email
	etagSeq  int
	// propagation is how long a new service account stays unknown to IAM policies (see usable).
	propagation time.Duration
	// onDelete, if set, is told "serviceAccount:EMAIL" and "deleted:serviceAccount:EMAIL?uid=ID" when an account
	// is deleted, so the other policy stores keep the deleted principal as Google does.
	onDelete func(member, deleted string)
}

func newIAMAdmin() *iamAdmin {
	a := &iamAdmin{accounts: map[string]*adminpb.ServiceAccount{}, created: map[string]time.Time{},
		policies: sandboxsrv.NewPolicyStore()}
	a.policies.RoleOK = func(_, role string) bool {
		switch role {
		case "roles/owner", "roles/editor", "roles/viewer":
			return true
		}
		return strings.HasPrefix(role, "roles/iam.") || strings.Contains(role, "/roles/")
	}
	return a
}

func digits(n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		d, _ := rand.Int(rand.Reader, big.NewInt(10))
		if i == 0 && d.Int64() == 0 {
			d = big.NewInt(1)
		}
		b.WriteString(d.String())
	}
	return b.String()
}

func (a *iamAdmin) nextEtag() []byte {
	a.etagSeq++
	return []byte("\x07sa" + strconv.Itoa(a.etagSeq))
}

// lookup resolves projects/{P|-}/serviceAccounts/{EMAIL|UNIQUE_ID}; caller holds a.mu.
func (a *iamAdmin) lookup(name string) (*adminpb.ServiceAccount, error) {
	p := strings.Split(name, "/")
	if len(p) != 4 || p[0] != "projects" || p[2] != "serviceAccounts" || p[3] == "" {
		return nil, status.Errorf(codes.InvalidArgument, "Invalid form of account ID %s. Should be [Gaia ID |Email |Unique ID |] of the account", name)
	}
	if sa, ok := a.accounts[p[3]]; ok && (p[1] == "-" || p[1] == sa.ProjectId) {
		return sa, nil
	}
	for _, sa := range a.accounts {
		if sa.UniqueId == p[3] && (p[1] == "-" || p[1] == sa.ProjectId) {
			return sa, nil
		}
	}
	return nil, status.Errorf(codes.NotFound, "Unknown service account")
}

func (a *iamAdmin) CreateServiceAccount(ctx context.Context, req *adminpb.CreateServiceAccountRequest) (*adminpb.ServiceAccount, error) {
	project, ok := strings.CutPrefix(req.GetName(), "projects/")
	if !ok || validProject(project) != nil {
		return nil, status.Errorf(codes.InvalidArgument, "Invalid project resource name %q: want projects/PROJECT_ID.", req.GetName())
	}
	id := req.GetAccountId()
	if len(id) < 6 || len(id) > 30 || !accountIDRE.MatchString(id) {
		return nil, status.Errorf(codes.InvalidArgument, "Invalid account id %q: must be 6-30 characters matching [a-z]([-a-z0-9]*[a-z0-9]).", id)
	}
	email := fmt.Sprintf("%s@%s.iam.gserviceaccount.com", id, project)
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, exists := a.accounts[email]; exists {
		return nil, status.Errorf(codes.AlreadyExists, "Service account %s already exists within project projects/%s.", id, project)
	}
	in := req.GetServiceAccount()
	uid := digits(21)
	sa := &adminpb.ServiceAccount{
		Name: "projects/" + project + "/serviceAccounts/" + email, ProjectId: project, UniqueId: uid, Email: email,
		DisplayName: in.GetDisplayName(), Description: in.GetDescription(), Oauth2ClientId: uid, Etag: a.nextEtag(),
	}
	a.accounts[email] = sa
	a.created[email] = time.Now()
	return proto.Clone(sa).(*adminpb.ServiceAccount), nil
}

func (a *iamAdmin) GetServiceAccount(ctx context.Context, req *adminpb.GetServiceAccountRequest) (*adminpb.ServiceAccount, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	sa, err := a.lookup(req.GetName())
	if err != nil {
		return nil, err
	}
	return proto.Clone(sa).(*adminpb.ServiceAccount), nil
}

func (a *iamAdmin) ListServiceAccounts(ctx context.Context, req *adminpb.ListServiceAccountsRequest) (*adminpb.ListServiceAccountsResponse, error) {
	project, ok := strings.CutPrefix(req.GetName(), "projects/")
	if !ok || validProject(project) != nil {
		return nil, status.Errorf(codes.InvalidArgument, "Invalid project resource name %q.", req.GetName())
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	var all []*adminpb.ServiceAccount
	for _, sa := range a.accounts {
		if sa.ProjectId == project {
			all = append(all, sa)
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].Email < all[j].Email })
	start := 0
	if t := req.GetPageToken(); t != "" {
		n, err := strconv.Atoi(t)
		if err != nil || n < 0 || n > len(all) {
			return nil, status.Errorf(codes.InvalidArgument, "Invalid page token %q.", t)
		}
		start = n
	}
	size := int(req.GetPageSize())
	if size <= 0 || size > 100 {
		size = 100
	}
	end := min(start+size, len(all))
	resp := &adminpb.ListServiceAccountsResponse{}
	for _, sa := range all[start:end] {
		resp.Accounts = append(resp.Accounts, proto.Clone(sa).(*adminpb.ServiceAccount))
	}
	if end < len(all) {
		resp.NextPageToken = strconv.Itoa(end)
	}
	return resp, nil
}

func (a *iamAdmin) DeleteServiceAccount(ctx context.Context, req *adminpb.DeleteServiceAccountRequest) (*emptypb.Empty, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	sa, err := a.lookup(req.GetName())
	if err != nil {
		return nil, err
	}
	delete(a.accounts, sa.Email)
	delete(a.created, sa.Email)
	a.policies.Delete("sa:" + sa.Email)
	// Bindings naming the account are kept with the deleted principal, which grants nothing, and no longer stop
	// later writes of those policies (https://cloud.google.com/iam/docs/policies#handle-deleted-principals).
	member, deleted := "serviceAccount:"+sa.Email, "deleted:serviceAccount:"+sa.Email+"?uid="+sa.UniqueId
	a.policies.RenameMember(member, deleted)
	if a.onDelete != nil {
		a.onDelete(member, deleted)
	}
	return &emptypb.Empty{}, nil
}

func (a *iamAdmin) UpdateServiceAccount(ctx context.Context, req *adminpb.ServiceAccount) (*adminpb.ServiceAccount, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	sa, err := a.lookup(req.GetName())
	if err != nil {
		return nil, err
	}
	if len(req.Etag) > 0 && string(req.Etag) != string(sa.Etag) {
		return nil, status.Error(codes.Aborted, "The service account was modified concurrently (etag mismatch); re-read and retry.")
	}
	sa.DisplayName, sa.Description, sa.Etag = req.GetDisplayName(), req.GetDescription(), a.nextEtag()
	return proto.Clone(sa).(*adminpb.ServiceAccount), nil
}

func (a *iamAdmin) PatchServiceAccount(ctx context.Context, req *adminpb.PatchServiceAccountRequest) (*adminpb.ServiceAccount, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	in := req.GetServiceAccount()
	sa, err := a.lookup(in.GetName())
	if err != nil {
		return nil, err
	}
	if len(in.Etag) > 0 && string(in.Etag) != string(sa.Etag) {
		return nil, status.Error(codes.Aborted, "The service account was modified concurrently (etag mismatch); re-read and retry.")
	}
	paths := req.GetUpdateMask().GetPaths()
	if len(paths) == 0 {
		return nil, status.Error(codes.InvalidArgument, "update_mask is required.")
	}
	for _, p := range paths {
		switch p {
		case "display_name", "displayName":
			sa.DisplayName = in.GetDisplayName()
		case "description":
			sa.Description = in.GetDescription()
		default:
			return nil, status.Errorf(codes.InvalidArgument, "Invalid update_mask path %q: only display_name and description can be patched.", p)
		}
	}
	sa.Etag = a.nextEtag()
	return proto.Clone(sa).(*adminpb.ServiceAccount), nil
}

func (a *iamAdmin) saKey(resource string) (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	sa, err := a.lookup(resource)
	if err != nil {
		return "", err
	}
	return "sa:" + sa.Email, nil
}

func (a *iamAdmin) GetIamPolicy(ctx context.Context, req *iampb.GetIamPolicyRequest) (*iampb.Policy, error) {
	k, err := a.saKey(req.GetResource())
	if err != nil {
		return nil, err
	}
	return a.policies.Get(k), nil
}

func (a *iamAdmin) SetIamPolicy(ctx context.Context, req *iampb.SetIamPolicyRequest) (*iampb.Policy, error) {
	k, err := a.saKey(req.GetResource())
	if err != nil {
		return nil, err
	}
	return a.policies.Set(k, req.GetPolicy(), req.GetUpdateMask().GetPaths())
}

func (a *iamAdmin) TestIamPermissions(ctx context.Context, req *iampb.TestIamPermissionsRequest) (*iampb.TestIamPermissionsResponse, error) {
	if _, err := a.saKey(req.GetResource()); err != nil {
		return nil, err
	}
	got, err := sandboxsrv.GrantedPermissions(req.GetPermissions(), "iam.serviceAccounts.")
	if err != nil {
		return nil, err
	}
	return &iampb.TestIamPermissionsResponse{Permissions: got}, nil
}

// usable tells whether IAM policies accept the account as a member yet. Service accounts are eventually
// consistent: "if you create a service account, then immediately try to use it, the request might fail"
// (https://cloud.google.com/iam/docs/service-account-overview#eventual-consistency; also
// https://cloud.google.com/iam/docs/overview#consistency). GetServiceAccount finds the account at once, but for
// `propagation` after it was created a policy naming it is refused as if it did not exist, as on GCP.
func (a *iamAdmin) usable(email string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.accounts[email]; !ok {
		return false
	}
	return time.Since(a.created[email]) >= a.propagation
}

func (a *iamAdmin) setPropagation(d time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.propagation = d
}

// registerIAMAdmin serves GET/PUT <admin>/iam/propagation ({"seconds": N}): how long a new service account is
// refused in policies (flag --iam-propagation); a change applies to accounts already created too.
func registerIAMAdmin(srv *sandboxsrv.Server, a *iamAdmin) {
	srv.Admin.HandleFunc("/iam/propagation", func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet:
		case http.MethodPut, http.MethodPost:
			var body struct {
				Seconds *float64 `json:"seconds"`
			}
			if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.Seconds == nil || *body.Seconds < 0 {
				http.Error(w, `want {"seconds": N} with N >= 0`, http.StatusBadRequest)
				return
			}
			a.setPropagation(time.Duration(*body.Seconds * float64(time.Second)))
		default:
			http.Error(w, "GET or PUT", http.StatusMethodNotAllowed)
			return
		}
		a.mu.Lock()
		d := a.propagation
		a.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]float64{"seconds": d.Seconds()})
	})
}

// checkMember mirrors IAM's existence checks for members that name Google resources: a service account of
// a sandbox project must exist (and have propagated, see usable), and a Workload Identity member needs its pool
// (created by the first GKE cluster with Workload Identity in that project) — the error spinboot would hit in
// production if it bound the Kubernetes service account before the cluster existed. The wording is IAM's:
// INVALID_ARGUMENT "Service account EMAIL does not exist." (HTTP 400).
func checkMember(a *iamAdmin, gke *container) func(string) error {
	return func(m string) error {
		if email, ok := strings.CutPrefix(m, "serviceAccount:"); ok && saEmailRE.MatchString(email) && !a.usable(email) {
			return status.Errorf(codes.InvalidArgument, "Service account %s does not exist.", email)
		}
		if g := wiMemberRE.FindStringSubmatch(m); g != nil && !gke.wiPoolExists(g[1]) {
			return status.Errorf(codes.InvalidArgument, "Identity Pool does not exist (%s). Please check that you specified a valid resource name as returned in the `name` attribute in the configuration API.", g[1])
		}
		return nil
	}
}

// projects implements the IAM policy part of google.cloud.resourcemanager.v3.Projects, plus GetProject.
// Every well-formed project ID exists (the sandbox has no project lifecycle), unless --projects limits them.
type projects struct {
	resourcemanagerpb.UnimplementedProjectsServer
	known    map[string]bool // empty: all well-formed IDs exist
	policies *sandboxsrv.PolicyStore
}

func (p *projects) resolve(name string) (string, error) {
	id, ok := strings.CutPrefix(name, "projects/")
	if !ok || strings.Contains(id, "/") || validProject(id) != nil {
		return "", status.Errorf(codes.InvalidArgument, "Invalid resource name %q: want projects/PROJECT_ID.", name)
	}
	if len(p.known) > 0 {
		for k := range p.known {
			if projectNumber(k) == id {
				id = k
			}
		}
		if !p.known[id] {
			// Google answers PERMISSION_DENIED, not NOT_FOUND, for projects the caller cannot see.
			return "", status.Errorf(codes.PermissionDenied, "The caller does not have permission (project %s does not exist in the sandbox).", id)
		}
	}
	return id, nil
}

func (p *projects) GetProject(ctx context.Context, req *resourcemanagerpb.GetProjectRequest) (*resourcemanagerpb.Project, error) {
	id, err := p.resolve(req.GetName())
	if err != nil {
		return nil, err
	}
	return &resourcemanagerpb.Project{
		Name: "projects/" + projectNumber(id), ProjectId: id, DisplayName: id, State: resourcemanagerpb.Project_ACTIVE,
		Parent: "organizations/123456789012", Etag: "W/\"" + projectNumber(id) + "\"",
	}, nil
}

func (p *projects) GetIamPolicy(ctx context.Context, req *iampb.GetIamPolicyRequest) (*iampb.Policy, error) {
	id, err := p.resolve(req.GetResource())
	if err != nil {
		return nil, err
	}
	return p.policies.Get(id), nil
}

func (p *projects) SetIamPolicy(ctx context.Context, req *iampb.SetIamPolicyRequest) (*iampb.Policy, error) {
	id, err := p.resolve(req.GetResource())
	if err != nil {
		return nil, err
	}
	return p.policies.Set(id, req.GetPolicy(), req.GetUpdateMask().GetPaths())
}

func (p *projects) TestIamPermissions(ctx context.Context, req *iampb.TestIamPermissionsRequest) (*iampb.TestIamPermissionsResponse, error) {
	if _, err := p.resolve(req.GetResource()); err != nil {
		return nil, err
	}
	got, err := sandboxsrv.GrantedPermissions(req.GetPermissions(), "")
	if err != nil {
		return nil, err
	}
	return &iampb.TestIamPermissionsResponse{Permissions: got}, nil
}
