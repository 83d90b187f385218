package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/container/apiv1/containerpb"
	"cloud.google.com/go/iam/admin/apiv1/adminpb"
	"cloud.google.com/go/iam/apiv1/iampb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"

	"spinboot.dev/sandbox/internal/sandboxsrv"
)

const (
	testParent  = "projects/acme-platform/locations/us-central1-b"
	testCluster = testParent + "/clusters/spinnaker"
	testPool    = testCluster + "/nodePools/pool"
	testVersion = "1.36.3-gke.1000"
)

// newTestCluster is a GKE stand-in holding one running cluster (Workload Identity, one pool of 2, label team=sre).
// Operations take 30 ms, long enough for a test to meet one still running.
func newTestCluster(t *testing.T) *container {
	t.Helper()
	s := newContainer(context.Background(), 30*time.Millisecond, testVersion, &provisioner{})
	op, err := s.CreateCluster(context.Background(), &containerpb.CreateClusterRequest{Parent: testParent, Cluster: &containerpb.Cluster{
		Name:                   "spinnaker",
		ResourceLabels:         map[string]string{"team": "sre", "managed-by": "spinboot"},
		WorkloadIdentityConfig: &containerpb.WorkloadIdentityConfig{WorkloadPool: "acme-platform.svc.id.goog"},
		NodePools:              []*containerpb.NodePool{{Name: "pool", InitialNodeCount: 2}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	wait(t, s, op)
	return s
}

// wait blocks until the operation is DONE and fails the test on its error.
func wait(t *testing.T, s *container, op *containerpb.Operation) {
	t.Helper()
	s.inflight.Wait()
	got, err := s.GetOperation(context.Background(), &containerpb.GetOperationRequest{Name: testParent + "/operations/" + op.Name})
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != containerpb.Operation_DONE || got.Error != nil {
		t.Fatalf("operation %s: %v", op.Name, got)
	}
}

func get(t *testing.T, s *container) *containerpb.Cluster {
	t.Helper()
	c, err := s.GetCluster(context.Background(), &containerpb.GetClusterRequest{Name: testCluster})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// wantStatus fails unless err is a gRPC status with code and a message containing each of parts.
func wantStatus(t *testing.T, err error, code codes.Code, parts ...string) {
	t.Helper()
	st, _ := status.FromError(err)
	if err == nil || st.Code() != code {
		t.Fatalf("want %s, got %v", code, err)
	}
	for _, p := range parts {
		if !strings.Contains(st.Message(), p) {
			t.Fatalf("message %q does not contain %q", st.Message(), p)
		}
	}
}

func TestSetLabelsFingerprint(t *testing.T) {
	s := newTestCluster(t)
	ctx := context.Background()
	c := get(t, s)
	fp := c.LabelFingerprint
	if len(fp) != 8 {
		t.Fatalf("a new cluster has a label fingerprint of 8 hex digits, got %q", fp)
	}
	// A missing or stale fingerprint is refused in GKE's words, naming the expected one.
	_, err := s.SetLabels(ctx, &containerpb.SetLabelsRequest{Name: testCluster, ResourceLabels: map[string]string{"team": "platform"}})
	wantStatus(t, err, codes.FailedPrecondition, `incorrect fingerprint supplied was ""`, `the expected one is "`+fp+`"`)
	_, err = s.SetLabels(ctx, &containerpb.SetLabelsRequest{Name: testCluster, ResourceLabels: map[string]string{"Team": "x"}, LabelFingerprint: fp})
	wantStatus(t, err, codes.InvalidArgument, "label key")

	// The labels are replaced as a whole: a label left out is removed.
	op, err := s.SetLabels(ctx, &containerpb.SetLabelsRequest{Name: testCluster, LabelFingerprint: fp,
		ResourceLabels: map[string]string{"team": "platform", "cost-center": "cc-42"}})
	if err != nil {
		t.Fatal(err)
	}
	if op.OperationType != containerpb.Operation_UPDATE_CLUSTER {
		t.Fatalf("labels are an UPDATE_CLUSTER operation, got %s", op.OperationType)
	}
	_, err = s.SetLabels(ctx, &containerpb.SetLabelsRequest{Name: testCluster, LabelFingerprint: fp})
	wantStatus(t, err, codes.FailedPrecondition, "incompatible operation")
	wait(t, s, op)
	c = get(t, s)
	if len(c.ResourceLabels) != 2 || c.ResourceLabels["team"] != "platform" || c.ResourceLabels["cost-center"] != "cc-42" {
		t.Fatalf("labels: %v", c.ResourceLabels)
	}
	if c.LabelFingerprint == fp || c.LabelFingerprint == "" {
		t.Fatalf("the fingerprint changes after every label update: %q", c.LabelFingerprint)
	}
	_, err = s.SetLabels(ctx, &containerpb.SetLabelsRequest{Name: testCluster, LabelFingerprint: fp})
	wantStatus(t, err, codes.FailedPrecondition, "fingerprint mismatch", `supplied was "`+fp+`"`)

	op, err = s.SetLabels(ctx, &containerpb.SetLabelsRequest{Name: testCluster, LabelFingerprint: c.LabelFingerprint})
	if err != nil {
		t.Fatal(err)
	}
	wait(t, s, op)
	if l := get(t, s).ResourceLabels; len(l) != 0 {
		t.Fatalf("an empty label set removes every label: %v", l)
	}
}

func TestSetNodePoolAutoscaling(t *testing.T) {
	s := newTestCluster(t)
	ctx := context.Background()
	set := func(a *containerpb.NodePoolAutoscaling) error {
		op, err := s.SetNodePoolAutoscaling(ctx, &containerpb.SetNodePoolAutoscalingRequest{Name: testPool, Autoscaling: a})
		if err == nil {
			wait(t, s, op)
		}
		return err
	}
	pool := func() *containerpb.NodePool { return get(t, s).NodePools[0] }

	if err := set(&containerpb.NodePoolAutoscaling{Enabled: true, MinNodeCount: 1, MaxNodeCount: 3}); err != nil {
		t.Fatal(err)
	}
	if a := pool().Autoscaling; !a.Enabled || a.MinNodeCount != 1 || a.MaxNodeCount != 3 {
		t.Fatalf("autoscaling on: %v", a)
	}
	if n := pool().InitialNodeCount; n != 2 {
		t.Fatalf("turning the autoscaler on does not resize the pool at once: %d nodes", n)
	}
	if err := set(&containerpb.NodePoolAutoscaling{Enabled: true, MinNodeCount: 2, MaxNodeCount: 5}); err != nil {
		t.Fatal(err)
	}
	if a := pool().Autoscaling; a.MinNodeCount != 2 || a.MaxNodeCount != 5 {
		t.Fatalf("autoscaling changed: %v", a)
	}
	wantStatus(t, set(&containerpb.NodePoolAutoscaling{Enabled: true, MinNodeCount: 4, MaxNodeCount: 3}), codes.InvalidArgument, "autoscaling limits")
	wantStatus(t, set(&containerpb.NodePoolAutoscaling{Enabled: true, MaxNodeCount: 1001}), codes.InvalidArgument, "autoscaling limits")
	wantStatus(t, set(nil), codes.InvalidArgument, "Autoscaling is required")
	if err := set(&containerpb.NodePoolAutoscaling{Enabled: false, MinNodeCount: 2, MaxNodeCount: 5}); err != nil {
		t.Fatal(err)
	}
	if a := pool().Autoscaling; a.Enabled || a.MinNodeCount != 0 || a.MaxNodeCount != 0 {
		t.Fatalf("autoscaling off leaves no limits behind: %v", a)
	}
	_, err := s.SetNodePoolAutoscaling(ctx, &containerpb.SetNodePoolAutoscalingRequest{Name: testCluster + "/nodePools/nope",
		Autoscaling: &containerpb.NodePoolAutoscaling{}})
	wantStatus(t, err, codes.NotFound)
}

func TestUpdateClusterTakesExactlyOneField(t *testing.T) {
	s := newTestCluster(t)
	ctx := context.Background()
	update := func(u *containerpb.ClusterUpdate) error {
		op, err := s.UpdateCluster(ctx, &containerpb.UpdateClusterRequest{Name: testCluster, Update: u})
		if err == nil {
			wait(t, s, op)
		}
		return err
	}
	wantStatus(t, update(&containerpb.ClusterUpdate{}), codes.InvalidArgument, "Must specify a field to update.")
	wantStatus(t, update(nil), codes.InvalidArgument, "Must specify a field to update.")
	wantStatus(t, update(&containerpb.ClusterUpdate{
		DesiredReleaseChannel:                 &containerpb.ReleaseChannel{Channel: containerpb.ReleaseChannel_STABLE},
		DesiredMasterAuthorizedNetworksConfig: &containerpb.MasterAuthorizedNetworksConfig{Enabled: true},
	}), codes.InvalidArgument, "Exactly one update can be applied to a cluster with each request",
		"'desired_master_authorized_networks_config', 'desired_release_channel'")
	// etag and desired_node_pool_id qualify an update: they are not counted as one.
	if err := update(&containerpb.ClusterUpdate{DesiredNodePoolId: "pool", Etag: get(t, s).Etag,
		DesiredNodePoolAutoscaling: &containerpb.NodePoolAutoscaling{Enabled: true, MinNodeCount: 1, MaxNodeCount: 2}}); err != nil {
		t.Fatal(err)
	}
	if a := get(t, s).NodePools[0].Autoscaling; !a.Enabled || a.MaxNodeCount != 2 {
		t.Fatalf("desired_node_pool_autoscaling: %v", a)
	}
	wantStatus(t, update(&containerpb.ClusterUpdate{Etag: "stale", DesiredReleaseChannel: &containerpb.ReleaseChannel{}}), codes.Aborted)
	wantStatus(t, update(&containerpb.ClusterUpdate{DesiredNodePoolId: "pool"}), codes.InvalidArgument, "Must specify a field to update.")
	// A field of the real API the stand-in does not apply is refused, never ignored.
	wantStatus(t, update(&containerpb.ClusterUpdate{DesiredShieldedNodes: &containerpb.ShieldedNodes{Enabled: true}}), codes.Unimplemented, "desired_shielded_nodes")
	// A field unknown to the API is refused as the request's mistake.
	unknown := &containerpb.ClusterUpdate{DesiredReleaseChannel: &containerpb.ReleaseChannel{}}
	unknown.ProtoReflect().SetUnknown(protowire.AppendVarint(protowire.AppendTag(nil, 9999, protowire.VarintType), 1))
	wantStatus(t, update(unknown), codes.InvalidArgument, "unknown")

	if err := update(&containerpb.ClusterUpdate{DesiredReleaseChannel: &containerpb.ReleaseChannel{Channel: containerpb.ReleaseChannel_RAPID}}); err != nil {
		t.Fatal(err)
	}
	if ch := get(t, s).ReleaseChannel.Channel; ch != containerpb.ReleaseChannel_RAPID {
		t.Fatalf("release channel: %s", ch)
	}
}

func TestNodeVersionDashMeansTheMastersVersion(t *testing.T) {
	s := newTestCluster(t)
	ctx := context.Background()
	update := func(r *containerpb.UpdateNodePoolRequest) error {
		r.Name = testPool
		op, err := s.UpdateNodePool(ctx, r)
		if err == nil {
			if op.OperationType != containerpb.Operation_UPGRADE_NODES {
				t.Fatalf("node pool updates are UPGRADE_NODES operations, got %s", op.OperationType)
			}
			wait(t, s, op)
		}
		return err
	}
	const older = "1.35.2-gke.500"
	if err := update(&containerpb.UpdateNodePoolRequest{NodeVersion: older}); err != nil {
		t.Fatal(err)
	}
	if c := get(t, s); c.NodePools[0].Version != older || c.CurrentNodeVersion != older || c.CurrentMasterVersion != testVersion {
		t.Fatalf("explicit node version: pool %s, nodes %s, master %s", c.NodePools[0].Version, c.CurrentNodeVersion, c.CurrentMasterVersion)
	}
	// Changing only the metadata server leaves the version alone.
	if err := update(&containerpb.UpdateNodePoolRequest{WorkloadMetadataConfig: &containerpb.WorkloadMetadataConfig{
		Mode: containerpb.WorkloadMetadataConfig_GCE_METADATA}}); err != nil {
		t.Fatal(err)
	}
	p := get(t, s).NodePools[0]
	if p.Version != older || p.Config.WorkloadMetadataConfig.Mode != containerpb.WorkloadMetadataConfig_GCE_METADATA {
		t.Fatalf("metadata-only update: version %s, mode %s", p.Version, p.Config.WorkloadMetadataConfig.Mode)
	}
	// "-" is the master's version: an upgrade for a pool that is behind.
	if err := update(&containerpb.UpdateNodePoolRequest{NodeVersion: "-", WorkloadMetadataConfig: &containerpb.WorkloadMetadataConfig{
		Mode: containerpb.WorkloadMetadataConfig_GKE_METADATA}}); err != nil {
		t.Fatal(err)
	}
	if c := get(t, s); c.NodePools[0].Version != testVersion || c.CurrentNodeVersion != testVersion {
		t.Fatalf(`node_version "-" upgrades to the master's version %s: pool %s, nodes %s`, testVersion, c.NodePools[0].Version, c.CurrentNodeVersion)
	}
	wantStatus(t, update(&containerpb.UpdateNodePoolRequest{}), codes.InvalidArgument, "At least one of ['node_version', 'image_type'", "must be specified.")
	wantStatus(t, update(&containerpb.UpdateNodePoolRequest{NodeVersion: "1.37.0-gke.1"}), codes.InvalidArgument, "newer than the master version")
	wantStatus(t, update(&containerpb.UpdateNodePoolRequest{NodeVersion: "banana"}), codes.InvalidArgument, "not a valid Kubernetes version")
	wantStatus(t, update(&containerpb.UpdateNodePoolRequest{ImageType: "-"}), codes.InvalidArgument, "image_type")
	wantStatus(t, update(&containerpb.UpdateNodePoolRequest{KubeletConfig: &containerpb.NodeKubeletConfig{}}), codes.Unimplemented, "kubelet_config")
	if err := update(&containerpb.UpdateNodePoolRequest{ImageType: "ubuntu_containerd"}); err != nil {
		t.Fatal(err)
	}
	if it := get(t, s).NodePools[0].Config.ImageType; it != "UBUNTU_CONTAINERD" {
		t.Fatalf("image type: %s", it)
	}
	// The same alias through UpdateCluster.
	if err := update(&containerpb.UpdateNodePoolRequest{NodeVersion: older}); err != nil {
		t.Fatal(err)
	}
	op, err := s.UpdateCluster(ctx, &containerpb.UpdateClusterRequest{Name: testCluster, Update: &containerpb.ClusterUpdate{DesiredNodeVersion: "-"}})
	if err != nil {
		t.Fatal(err)
	}
	wait(t, s, op)
	if v := get(t, s).NodePools[0].Version; v != testVersion {
		t.Fatalf(`desired_node_version "-": %s`, v)
	}
}

func TestNewServiceAccountPropagates(t *testing.T) {
	ctx := context.Background()
	iam := newIAMAdmin()
	check := checkMember(iam, newContainer(ctx, time.Millisecond, testVersion, &provisioner{}))
	iam.setPropagation(300 * time.Millisecond)
	sa, err := iam.CreateServiceAccount(ctx, &adminpb.CreateServiceAccountRequest{Name: "projects/acme-platform", AccountId: "spinnaker"})
	if err != nil {
		t.Fatal(err)
	}
	// GET finds it at once; a policy naming it is refused in IAM's words until it has propagated.
	if _, err := iam.GetServiceAccount(ctx, &adminpb.GetServiceAccountRequest{Name: sa.Name}); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, check("serviceAccount:"+sa.Email), codes.InvalidArgument, "Service account "+sa.Email+" does not exist.")
	time.Sleep(350 * time.Millisecond)
	if err := check("serviceAccount:" + sa.Email); err != nil {
		t.Fatalf("after the propagation delay: %v", err)
	}
	wantStatus(t, check("serviceAccount:ghost-account@acme-platform.iam.gserviceaccount.com"), codes.InvalidArgument, "does not exist")

	// The delay is set through the admin endpoint too, and applies to accounts already made.
	srv, err := sandboxsrv.New("gke-emulator", &sandboxsrv.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	registerIAMAdmin(srv, iam)
	admin := httptest.NewServer(srv.Admin)
	defer admin.Close()
	put := func(body string) (int, float64) {
		req, _ := http.NewRequest(http.MethodPut, admin.URL+"/iam/propagation", strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out struct{ Seconds float64 }
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out.Seconds
	}
	if code, secs := put(`{"seconds": 60}`); code != 200 || secs != 60 {
		t.Fatalf("PUT /iam/propagation: %d %v", code, secs)
	}
	wantStatus(t, check("serviceAccount:"+sa.Email), codes.InvalidArgument, "does not exist")
	if code, _ := put(`{"seconds": -1}`); code != http.StatusBadRequest {
		t.Fatalf("a negative delay is refused: %d", code)
	}
	if code, secs := put(`{"seconds": 0}`); code != 200 || secs != 0 {
		t.Fatalf("PUT /iam/propagation 0: %d %v", code, secs)
	}
	if err := check("serviceAccount:" + sa.Email); err != nil {
		t.Fatal(err)
	}
}

func TestDeletedServiceAccountStaysAsDeletedPrincipal(t *testing.T) {
	ctx := context.Background()
	iam := newIAMAdmin()
	project := sandboxsrv.NewPolicyStore()
	project.MemberCheck = checkMember(iam, newContainer(ctx, time.Millisecond, testVersion, &provisioner{}))
	iam.onDelete = func(member, deleted string) { project.RenameMember(member, deleted) }
	sa, err := iam.CreateServiceAccount(ctx, &adminpb.CreateServiceAccountRequest{Name: "projects/acme-platform", AccountId: "spinnaker-nodes"})
	if err != nil {
		t.Fatal(err)
	}
	member := "serviceAccount:" + sa.Email
	p := project.Get("acme-platform")
	p.Bindings = append(p.Bindings, &iampb.Binding{Role: "roles/container.defaultNodeServiceAccount", Members: []string{member, "user:sre@example.com"}})
	if _, err := project.Set("acme-platform", p, nil); err != nil {
		t.Fatal(err)
	}
	before := project.Get("acme-platform").Etag
	if _, err := iam.DeleteServiceAccount(ctx, &adminpb.DeleteServiceAccountRequest{Name: sa.Name}); err != nil {
		t.Fatal(err)
	}
	p = project.Get("acme-platform")
	want := "deleted:serviceAccount:" + sa.Email + "?uid=" + sa.UniqueId
	if got := p.Bindings[0].Members; len(got) != 2 || got[0] != want || got[1] != "user:sre@example.com" {
		t.Fatalf("members after deletion: %v", got)
	}
	if string(p.Etag) == string(before) {
		t.Fatal("the policy changed, so its etag did")
	}
	// The policy as read can be written back; naming the deleted account afresh is refused.
	if _, err := project.Set("acme-platform", p, nil); err != nil {
		t.Fatalf("a policy holding a deleted principal is still writable: %v", err)
	}
	p = project.Get("acme-platform")
	p.Bindings[0].Members = append(p.Bindings[0].Members, member)
	_, err = project.Set("acme-platform", p, nil)
	wantStatus(t, err, codes.InvalidArgument, "does not exist")
}
