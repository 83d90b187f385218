package main

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"cloud.google.com/go/iam/admin/apiv1/adminpb"
	"cloud.google.com/go/iam/apiv1/iampb"
	pb "cloud.google.com/go/policytroubleshooter/apiv1/policytroubleshooterpb"
	"google.golang.org/genproto/googleapis/type/expr"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

func newTestTroubleshooter(t *testing.T) *troubleshooter {
	return &troubleshooter{ar: newTestAR(t), iam: newIAMAdmin(), http: http.DefaultClient}
}

func troubleshoot(t *testing.T, ts *troubleshooter, ctx context.Context, resource, perm string) *pb.TroubleshootIamPolicyResponse {
	t.Helper()
	resp, err := ts.TroubleshootIamPolicy(ctx, &pb.TroubleshootIamPolicyRequest{AccessTuple: &pb.AccessTuple{
		Principal: spinnaker, FullResourceName: resource, Permission: perm}})
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func TestExplain(t *testing.T) {
	roles := testRoles(t)
	sa := "serviceAccount:" + spinnaker
	pol := func(bs ...*iampb.Binding) []namedPolicy {
		return []namedPolicy{{full: "//x/r", policy: &iampb.Policy{Bindings: bs}}}
	}
	reader := func(members ...string) *iampb.Binding {
		return &iampb.Binding{Role: "roles/artifactregistry.reader", Members: members}
	}
	cases := []struct {
		name string
		pols []namedPolicy
		want pb.AccessState
	}{
		{"direct", pol(reader("user:a@example.com", sa)), pb.AccessState_GRANTED},
		{"other member", pol(reader("user:a@example.com")), pb.AccessState_NOT_GRANTED},
		{"role lacks permission", pol(&iampb.Binding{Role: "roles/pubsub.subscriber", Members: []string{sa}}), pb.AccessState_NOT_GRANTED},
		{"allAuthenticatedUsers", pol(reader("allAuthenticatedUsers")), pb.AccessState_GRANTED},
		{"conditional", pol(&iampb.Binding{Role: "roles/artifactregistry.reader", Members: []string{sa}, Condition: &expr.Expr{Expression: "true"}}), pb.AccessState_UNKNOWN_CONDITIONAL},
		{"unreadable", []namedPolicy{{}}, pb.AccessState_UNKNOWN_INFO_DENIED},
		{"inherited", append(pol(), namedPolicy{full: "//p", policy: &iampb.Policy{Bindings: []*iampb.Binding{reader(sa)}}}), pb.AccessState_GRANTED},
	}
	for _, c := range cases {
		if got := explain(roles, sa, permDownload, c.pols); got.Access != c.want {
			t.Errorf("%s: access %v, want %v", c.name, got.Access, c.want)
		}
	}
	got := explain(roles, sa, permDownload, pol(reader("user:a@example.com", sa)))
	be := got.ExplainedPolicies[0].BindingExplanations[0]
	if be.RolePermission != pb.BindingExplanation_ROLE_PERMISSION_INCLUDED || be.Memberships[sa].Membership != pb.BindingExplanation_MEMBERSHIP_INCLUDED ||
		be.Memberships["user:a@example.com"].Membership != pb.BindingExplanation_MEMBERSHIP_NOT_INCLUDED || be.Relevance != pb.HeuristicRelevance_HIGH {
		t.Errorf("binding explanation %v", be)
	}
}

func TestTroubleshootRepositoryAndProject(t *testing.T) {
	ts, ctx := newTestTroubleshooter(t), context.Background()
	mustCreate(t, ts.ar, testRepo)
	full := "//artifactregistry.googleapis.com/" + testRepo
	resp := troubleshoot(t, ts, ctx, full, permDownload)
	if resp.Access != pb.AccessState_NOT_GRANTED || len(resp.ExplainedPolicies) != 2 || resp.ExplainedPolicies[0].FullResourceName != full ||
		resp.ExplainedPolicies[1].FullResourceName != "//cloudresourcemanager.googleapis.com/projects/acme-platform" {
		t.Fatalf("before grant: %v", resp)
	}
	grant(t, ts.ar, testRepo, "roles/artifactregistry.reader", "serviceAccount:"+spinnaker)
	if resp = troubleshoot(t, ts, ctx, full, permDownload); resp.Access != pb.AccessState_GRANTED || resp.ExplainedPolicies[0].Access != pb.AccessState_GRANTED {
		t.Fatalf("after grant: %v", resp)
	}
	// The caller is an identity that may not read the repository's policy: that policy is UNKNOWN_INFO_DENIED.
	resp = troubleshoot(t, ts, asIdentity("other@acme-platform.iam.gserviceaccount.com"), full, permDownload)
	if resp.Access != pb.AccessState_UNKNOWN_INFO_DENIED || resp.ExplainedPolicies[0].Policy != nil {
		t.Fatalf("as identity: %v", resp)
	}
	// A repository that does not exist: only the project's policy, and an error saying why.
	resp = troubleshoot(t, ts, ctx, "//artifactregistry.googleapis.com/projects/acme-platform/locations/us/repositories/nope", permDownload)
	if resp.Access != pb.AccessState_NOT_GRANTED || len(resp.ExplainedPolicies) != 1 || len(resp.Errors) != 1 {
		t.Fatalf("missing repository: %v", resp)
	}
	if resp = troubleshoot(t, ts, ctx, "//cloudresourcemanager.googleapis.com/projects/acme-platform", permDownload); len(resp.ExplainedPolicies) != 1 {
		t.Fatalf("project: %v", resp)
	}
	for _, bad := range []string{"//compute.googleapis.com/projects/p/zones/z/instances/i", "projects/acme-platform"} {
		_, err := ts.TroubleshootIamPolicy(ctx, &pb.TroubleshootIamPolicyRequest{AccessTuple: &pb.AccessTuple{Principal: spinnaker, FullResourceName: bad, Permission: permDownload}})
		wantCode(t, err, codes.InvalidArgument, "")
	}
}

func TestTroubleshootServiceAccount(t *testing.T) {
	ts, ctx := newTestTroubleshooter(t), context.Background()
	sa, err := ts.iam.CreateServiceAccount(ctx, &adminpb.CreateServiceAccountRequest{Name: "projects/acme-platform", AccountId: "spinnaker"})
	if err != nil {
		t.Fatal(err)
	}
	ts.iam.policies.MemberCheck = nil
	if _, err := ts.iam.policies.Set("sa:"+sa.Email, &iampb.Policy{Bindings: []*iampb.Binding{{Role: "roles/iam.workloadIdentityUser",
		Members: []string{"serviceAccount:acme-platform.svc.id.goog[spinnaker/spinnaker]"}}}}, nil); err != nil {
		t.Fatal(err)
	}
	resp := troubleshoot(t, ts, ctx, "//iam.googleapis.com/projects/acme-platform/serviceAccounts/"+sa.Email, "iam.serviceAccounts.getAccessToken")
	if len(resp.ExplainedPolicies) != 2 || len(resp.ExplainedPolicies[0].Policy.Bindings) != 1 {
		t.Fatalf("%v", resp)
	}
}

type fakePubSubIAM struct {
	iampb.UnimplementedIAMPolicyServer
}

func (fakePubSubIAM) GetIamPolicy(_ context.Context, req *iampb.GetIamPolicyRequest) (*iampb.Policy, error) {
	if req.Resource != "projects/acme-platform/subscriptions/spinnaker-gcr" {
		return nil, status.Error(codes.NotFound, "Resource not found")
	}
	return &iampb.Policy{Bindings: []*iampb.Binding{{Role: "roles/pubsub.subscriber", Members: []string{"serviceAccount:" + spinnaker}}}}, nil
}

func TestTroubleshootPubSub(t *testing.T) {
	ts, ctx := newTestTroubleshooter(t), context.Background()
	full := "//pubsub.googleapis.com/projects/acme-platform/subscriptions/spinnaker-gcr"
	_, err := ts.TroubleshootIamPolicy(ctx, &pb.TroubleshootIamPolicyRequest{AccessTuple: &pb.AccessTuple{Principal: spinnaker, FullResourceName: full, Permission: "pubsub.subscriptions.consume"}})
	wantCode(t, err, codes.Unavailable, "PUBSUB_EMULATOR_HOST")

	lis, _ := net.Listen("tcp", "127.0.0.1:0")
	gs := grpc.NewServer()
	iampb.RegisterIAMPolicyServer(gs, fakePubSubIAM{})
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	cc, _ := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	t.Cleanup(func() { _ = cc.Close() })
	ts.ar.pubsub = cc
	if resp := troubleshoot(t, ts, ctx, full, "pubsub.subscriptions.consume"); resp.Access != pb.AccessState_GRANTED {
		t.Fatalf("%v", resp)
	}
	if resp := troubleshoot(t, ts, ctx, "//pubsub.googleapis.com/projects/acme-platform/subscriptions/other", "pubsub.subscriptions.consume"); resp.Access != pb.AccessState_NOT_GRANTED || len(resp.Errors) != 1 {
		t.Fatalf("%v", resp)
	}
}

func TestTroubleshootBucket(t *testing.T) {
	ts, ctx := newTestTroubleshooter(t), context.Background()
	full := "//storage.googleapis.com/projects/_/buckets/acme-spinnaker"
	_, err := ts.TroubleshootIamPolicy(ctx, &pb.TroubleshootIamPolicyRequest{AccessTuple: &pb.AccessTuple{Principal: spinnaker, FullResourceName: full, Permission: "storage.objects.get"}})
	wantCode(t, err, codes.Unavailable, "STORAGE_EMULATOR_HOST")

	mustCreate(t, ts.ar, testRepo) // makes acme-platform a known project, so the bucket's project number resolves
	gcs := http.NewServeMux()
	gcs.HandleFunc("/storage/v1/b/acme-spinnaker", func(w http.ResponseWriter, _ *http.Request) {
		writeJSONStatus(w, 200, map[string]string{"name": "acme-spinnaker", "projectNumber": projectNumber("acme-platform")})
	})
	gcs.HandleFunc("/storage/v1/b/acme-spinnaker/iam", func(w http.ResponseWriter, _ *http.Request) {
		writeJSONStatus(w, 200, map[string]any{"version": 1, "etag": "CAE=", "bindings": []map[string]any{
			{"role": "roles/storage.objectViewer", "members": []string{"serviceAccount:" + spinnaker}}}})
	})
	srv := httptest.NewServer(gcs)
	t.Cleanup(srv.Close)
	ts.storage = srv.URL
	resp := troubleshoot(t, ts, ctx, full, "storage.objects.get")
	if resp.Access != pb.AccessState_GRANTED || len(resp.ExplainedPolicies) != 2 || len(resp.Errors) != 0 {
		t.Fatalf("%v", resp)
	}
	if resp = troubleshoot(t, ts, ctx, full, "storage.buckets.get"); resp.Access != pb.AccessState_NOT_GRANTED {
		t.Fatalf("%v", resp)
	}
	if resp = troubleshoot(t, ts, ctx, "//storage.googleapis.com/projects/_/buckets/missing", "storage.objects.get"); len(resp.Errors) != 1 {
		t.Fatalf("%v", resp)
	}
}
