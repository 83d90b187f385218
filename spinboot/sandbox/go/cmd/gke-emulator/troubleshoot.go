package main

// google.cloud.policytroubleshooter.v1.IamChecker/TroubleshootIamPolicy over the sandbox's own policies, so
// `spinboot doctor --sandbox` proves Spinnaker's Google identity the way it does on real GCP. It gathers the
// resource's policy and its project's (the sandbox has no folders or organization), evaluates them with the same
// role table every stand-in enforces (halconfig/iam-roles.yaml), and explains each binding as the real API does
// (https://cloud.google.com/policy-intelligence/docs/reference/policytroubleshooter/rest/v1/iam/troubleshoot).
// Pub/Sub policies are read from the pubsub-emulator and bucket policies from Storage, as the operator.

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"strings"
	"time"

	"cloud.google.com/go/iam/apiv1/iampb"
	pb "cloud.google.com/go/policytroubleshooter/apiv1/policytroubleshooterpb"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/genproto/googleapis/type/expr"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"spinboot.dev/sandbox/internal/sandboxsrv"
)

const granted = pb.AccessState_GRANTED

// namedPolicy is one policy of the resource hierarchy; policy nil means the caller may not read it.
type namedPolicy struct {
	full   string
	policy *iampb.Policy
}

func projectPolicy(proj *projects, project string) namedPolicy {
	if id, err := proj.resolve("projects/" + project); err == nil {
		project = id // a known project number names its ID
	}
	return namedPolicy{full: "//cloudresourcemanager.googleapis.com/projects/" + project, policy: proj.policies.Get(project)}
}

// includes reports whether a binding member covers the principal (member "" is an anonymous caller).
func includes(bindingMember, member string) bool {
	switch bindingMember {
	case "allUsers":
		return true
	case "allAuthenticatedUsers":
		return member != ""
	}
	return member != "" && bindingMember == member
}

func relevance(high bool) pb.HeuristicRelevance {
	if high {
		return pb.HeuristicRelevance_HIGH
	}
	return pb.HeuristicRelevance_NORMAL
}

// combine folds per-binding (or per-policy) states: any GRANTED wins; otherwise a policy the caller could not read
// leaves the answer unknown, then a conditional grant (the sandbox has no CEL, so a condition never grants here:
// stricter than GCP, never more lenient).
func combine(states []pb.AccessState) pb.AccessState {
	out := pb.AccessState_NOT_GRANTED
	for _, s := range states {
		switch {
		case s == granted:
			return granted
		case s == pb.AccessState_UNKNOWN_INFO_DENIED:
			out = s
		case s == pb.AccessState_UNKNOWN_CONDITIONAL && out == pb.AccessState_NOT_GRANTED:
			out = s
		}
	}
	return out
}

// explain evaluates member's permission over policies (most specific first) and annotates every binding.
// Relevance is the API's heuristic: HIGH for what decides (a granting binding, a role that holds the permission).
func explain(roles *sandboxsrv.Roles, member, perm string, policies []namedPolicy) *pb.TroubleshootIamPolicyResponse {
	resp := &pb.TroubleshootIamPolicyResponse{}
	var overall []pb.AccessState
	for _, np := range policies {
		if np.policy == nil {
			resp.ExplainedPolicies = append(resp.ExplainedPolicies, &pb.ExplainedPolicy{Access: pb.AccessState_UNKNOWN_INFO_DENIED})
			overall = append(overall, pb.AccessState_UNKNOWN_INFO_DENIED)
			continue
		}
		ep := &pb.ExplainedPolicy{FullResourceName: np.full, Policy: np.policy}
		var states []pb.AccessState
		for _, b := range np.policy.Bindings {
			holds := roles.Holds(b.Role, perm)
			be := &pb.BindingExplanation{Role: b.Role, Condition: b.Condition, RolePermission: pb.BindingExplanation_ROLE_PERMISSION_NOT_INCLUDED,
				RolePermissionRelevance: relevance(holds), Memberships: map[string]*pb.BindingExplanation_AnnotatedMembership{}}
			if holds {
				be.RolePermission = pb.BindingExplanation_ROLE_PERMISSION_INCLUDED
			}
			in := false
			for _, m := range b.Members {
				inc := includes(m, member)
				am := &pb.BindingExplanation_AnnotatedMembership{Membership: pb.BindingExplanation_MEMBERSHIP_NOT_INCLUDED, Relevance: relevance(inc)}
				if inc {
					am.Membership, in = pb.BindingExplanation_MEMBERSHIP_INCLUDED, true
				}
				be.Memberships[m] = am
			}
			switch {
			case holds && in && b.Condition != nil:
				be.Access = pb.AccessState_UNKNOWN_CONDITIONAL
			case holds && in:
				be.Access = granted
			default:
				be.Access = pb.AccessState_NOT_GRANTED
			}
			be.Relevance = relevance(holds)
			states = append(states, be.Access)
			ep.BindingExplanations = append(ep.BindingExplanations, be)
		}
		ep.Access = combine(states)
		ep.Relevance = relevance(ep.Access == granted)
		overall = append(overall, ep.Access)
		resp.ExplainedPolicies = append(resp.ExplainedPolicies, ep)
	}
	resp.Access = combine(overall)
	return resp
}

type troubleshooter struct {
	pb.UnimplementedIamCheckerServer
	ar      *artifactRegistry
	iam     *iamAdmin
	storage string // Storage emulator base URL, "" when STORAGE_EMULATOR_HOST is unset
	http    *http.Client
}

func registerTroubleshooter(srv *sandboxsrv.Server, ar *artifactRegistry, iamSrv *iamAdmin) {
	st := os.Getenv("STORAGE_EMULATOR_HOST")
	if st != "" && !strings.Contains(st, "://") {
		st = "http://" + st // google-cloud-storage accepts a bare host:port too
	}
	pb.RegisterIamCheckerServer(srv.GRPC, &troubleshooter{ar: ar, iam: iamSrv, storage: strings.TrimRight(st, "/"),
		http: &http.Client{Timeout: 10 * time.Second}})
}

var permissionRE = regexp.MustCompile(`^[a-z][a-zA-Z0-9]*\.[a-zA-Z0-9]+\.[a-zA-Z0-9]+$`)

func (t *troubleshooter) TroubleshootIamPolicy(ctx context.Context, req *pb.TroubleshootIamPolicyRequest) (*pb.TroubleshootIamPolicyResponse, error) {
	c := sandboxsrv.CallerFromContext(ctx, t.ar.secret)
	if c.Invalid {
		return nil, errUnauthenticated
	}
	at := req.GetAccessTuple()
	if at.GetPrincipal() == "" || at.GetFullResourceName() == "" || at.GetPermission() == "" {
		return nil, status.Error(codes.InvalidArgument, "access_tuple.principal, access_tuple.full_resource_name and access_tuple.permission are required.")
	}
	if !permissionRE.MatchString(at.GetPermission()) {
		return nil, status.Errorf(codes.InvalidArgument, "Permission %q is not valid: want SERVICE.RESOURCE.VERB.", at.GetPermission())
	}
	// The principal is an email: a Google Account or a service account (the API supports no other kinds).
	email := at.GetPrincipal()
	for _, p := range []string{"serviceAccount:", "user:"} {
		email = strings.TrimPrefix(email, p)
	}
	member := "user:" + email
	if strings.HasSuffix(email, ".gserviceaccount.com") {
		member = "serviceAccount:" + email
	}
	pols, readPerms, errs, err := t.gather(ctx, at.GetFullResourceName())
	if err != nil {
		return nil, err
	}
	if !c.Operator() {
		// A caller sees only the policies it may read (getIamPolicy at that level): the others are UNKNOWN_INFO_DENIED.
		for i := range pols {
			if explain(t.ar.roles, c.Member, readPerms[i], pols[i:]).Access != granted {
				pols[i].policy = nil
			}
		}
	}
	resp := explain(t.ar.roles, member, at.GetPermission(), pols)
	resp.Errors = errs
	return resp, nil
}

// gather returns the policies to evaluate for a full resource name, most specific first, with the permission that
// reads each, and non-fatal errors (a resource that does not exist: only its project's policy is evaluated).
func (t *troubleshooter) gather(ctx context.Context, full string) ([]namedPolicy, []string, []*spb.Status, error) {
	const projRead = "resourcemanager.projects.getIamPolicy"
	notFound := func(what string) []*spb.Status {
		return []*spb.Status{{Code: int32(codes.NotFound), Message: what + " not found: only its project's policy was evaluated."}}
	}
	svc, rest, _ := strings.Cut(strings.TrimPrefix(full, "//"), "/")
	p := strings.Split(rest, "/")
	switch {
	case !strings.HasPrefix(full, "//"):
	case svc == "cloudresourcemanager.googleapis.com" && len(p) == 2 && p[0] == "projects":
		if _, err := t.ar.proj.resolve(rest); err != nil {
			return nil, nil, nil, err
		}
		return []namedPolicy{projectPolicy(t.ar.proj, p[1])}, []string{projRead}, nil, nil
	case svc == "artifactregistry.googleapis.com" && len(p) == 6:
		if _, _, _, err := parseARRepoName(rest); err != nil {
			return nil, nil, nil, err
		}
		pols := t.ar.policiesFor(rest)
		if len(pols) == 1 {
			return pols, []string{projRead}, notFound("Repository " + rest), nil
		}
		return pols, []string{"artifactregistry.repositories.getIamPolicy", projRead}, nil, nil
	case svc == "iam.googleapis.com" && len(p) == 4 && p[0] == "projects" && p[2] == "serviceAccounts":
		t.iam.mu.Lock()
		sa, err := t.iam.lookup(rest)
		t.iam.mu.Unlock()
		if err != nil {
			return []namedPolicy{projectPolicy(t.ar.proj, p[1])}, []string{projRead}, notFound("Service account " + p[3]), nil
		}
		return []namedPolicy{{full: "//iam.googleapis.com/projects/" + sa.ProjectId + "/serviceAccounts/" + sa.Email, policy: t.iam.policies.Get("sa:" + sa.Email)},
			projectPolicy(t.ar.proj, sa.ProjectId)}, []string{"iam.serviceAccounts.getIamPolicy", projRead}, nil, nil
	case svc == "pubsub.googleapis.com" && len(p) == 4 && p[0] == "projects" && (p[2] == "subscriptions" || p[2] == "topics"):
		if t.ar.pubsub == nil {
			return nil, nil, nil, status.Error(codes.Unavailable, "PUBSUB_EMULATOR_HOST is not set in the gke-emulator's environment: cannot read Pub/Sub policies.")
		}
		pol, err := iampb.NewIAMPolicyClient(t.ar.pubsub).GetIamPolicy(ctx, &iampb.GetIamPolicyRequest{Resource: rest})
		if status.Code(err) == codes.NotFound {
			return []namedPolicy{projectPolicy(t.ar.proj, p[1])}, []string{projRead}, notFound(rest), nil
		}
		if err != nil {
			return nil, nil, nil, status.Errorf(codes.Unavailable, "reading the policy of %s from the Pub/Sub emulator: %v", rest, err)
		}
		return []namedPolicy{{full: full, policy: pol}, projectPolicy(t.ar.proj, p[1])},
			[]string{"pubsub." + p[2] + ".getIamPolicy", projRead}, nil, nil
	case svc == "storage.googleapis.com" && len(p) == 4 && p[0] == "projects" && p[1] == "_" && p[2] == "buckets":
		return t.bucket(ctx, full, p[3])
	}
	return nil, nil, nil, status.Errorf(codes.InvalidArgument, "Unsupported full resource name %q: the sandbox troubleshoots //cloudresourcemanager.googleapis.com/projects/P, //artifactregistry.googleapis.com/projects/P/locations/L/repositories/R, //iam.googleapis.com/projects/P/serviceAccounts/EMAIL, //pubsub.googleapis.com/projects/P/{topics,subscriptions}/ID and //storage.googleapis.com/projects/_/buckets/B.", full)
}

// bucket reads a bucket's policy (JSON API bucket.getIamPolicy) and its project (from the bucket's projectNumber).
func (t *troubleshooter) bucket(ctx context.Context, full, name string) ([]namedPolicy, []string, []*spb.Status, error) {
	if t.storage == "" {
		return nil, nil, nil, status.Error(codes.Unavailable, "STORAGE_EMULATOR_HOST is not set in the gke-emulator's environment: cannot read bucket policies.")
	}
	var meta struct {
		ProjectNumber string `json:"projectNumber"`
	}
	var js struct {
		Version  int32 `json:"version"`
		Etag     string
		Bindings []struct {
			Role      string
			Members   []string
			Condition *struct{ Title, Description, Expression string }
		}
	}
	if code, err := t.getJSON(ctx, "/storage/v1/b/"+name, &meta); err != nil || code == http.StatusNotFound {
		if err != nil {
			return nil, nil, nil, err
		}
		return nil, nil, []*spb.Status{{Code: int32(codes.NotFound), Message: "Bucket " + name + " not found."}}, nil
	}
	if _, err := t.getJSON(ctx, "/storage/v1/b/"+name+"/iam?optionsRequestedPolicyVersion=3", &js); err != nil {
		return nil, nil, nil, err
	}
	etag, _ := base64.StdEncoding.DecodeString(js.Etag)
	pol := &iampb.Policy{Version: js.Version, Etag: etag}
	for _, b := range js.Bindings {
		ib := &iampb.Binding{Role: b.Role, Members: b.Members}
		if b.Condition != nil {
			ib.Condition = &expr.Expr{Title: b.Condition.Title, Description: b.Condition.Description, Expression: b.Condition.Expression}
		}
		pol.Bindings = append(pol.Bindings, ib)
	}
	pols := []namedPolicy{{full: full, policy: pol}}
	reads := []string{"storage.buckets.getIamPolicy"}
	if project, ok := t.projectByNumber(meta.ProjectNumber); ok {
		return append(pols, projectPolicy(t.ar.proj, project)), append(reads, "resourcemanager.projects.getIamPolicy"), nil, nil
	}
	return pols, reads, []*spb.Status{{Code: int32(codes.FailedPrecondition),
		Message: fmt.Sprintf("Bucket %s belongs to project number %s, which is no sandbox project: its project policy was not evaluated.", name, meta.ProjectNumber)}}, nil
}

func (t *troubleshooter) getJSON(ctx context.Context, path string, v any) (int, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, t.storage+path, nil)
	resp, err := t.http.Do(req)
	if err != nil {
		return 0, status.Errorf(codes.Unavailable, "Storage at %s: %v", t.storage, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return resp.StatusCode, nil
	}
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, status.Errorf(codes.Unavailable, "Storage GET %s: HTTP %d", path, resp.StatusCode)
	}
	return resp.StatusCode, json.NewDecoder(resp.Body).Decode(v)
}

// projectByNumber maps a project number to a project the sandbox knows of (listed with --projects, or owning a
// repository or a service account): sandbox project numbers are derived from IDs (projectNumber).
func (t *troubleshooter) projectByNumber(num string) (string, bool) {
	cands := map[string]bool{}
	for p := range t.ar.proj.known {
		cands[p] = true
	}
	t.ar.mu.Lock()
	for n := range t.ar.repos {
		p, _, _, _ := parseARRepoName(n)
		cands[p] = true
	}
	t.ar.mu.Unlock()
	t.iam.mu.Lock()
	for _, sa := range t.iam.accounts {
		cands[sa.ProjectId] = true
	}
	t.iam.mu.Unlock()
	for p := range cands {
		if projectNumber(p) == num || p == num {
			return p, true
		}
	}
	return "", false
}
