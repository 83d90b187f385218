package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"cloud.google.com/go/container/apiv1/containerpb"
	"cloud.google.com/go/logging/apiv2/loggingpb"
	"google.golang.org/genproto/googleapis/cloud/audit"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Audit events as kube-apiserver writes them (--audit-log-format=json, Metadata level).
const auditLines = `{"kind":"Event","level":"Metadata","auditID":"a1","stage":"ResponseComplete","requestURI":"/apis/apps/v1/namespaces/prod/deployments?fieldManager=kubectl-client-side-apply","verb":"create","user":{"username":"alice@acme.dev"},"objectRef":{"resource":"deployments","namespace":"prod","name":"web","apiGroup":"apps","apiVersion":"v1"},"responseStatus":{"code":201},"stageTimestamp":"2026-11-27T10:00:01.000000Z"}
{"kind":"Event","level":"Metadata","auditID":"a2","stage":"ResponseComplete","requestURI":"/apis/apps/v1/namespaces/prod/deployments/web/scale","verb":"patch","user":{"username":"bob@acme.dev"},"objectRef":{"resource":"deployments","namespace":"prod","name":"web","apiGroup":"apps","apiVersion":"v1","subresource":"scale"},"responseStatus":{"code":200},"stageTimestamp":"2026-11-27T10:05:00.000000Z"}
{"kind":"Event","level":"Metadata","auditID":"a3","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/dev/configmaps/x?dryRun=All","verb":"create","user":{"username":"bob@acme.dev"},"objectRef":{"resource":"configmaps","namespace":"dev","name":"x","apiVersion":"v1"},"responseStatus":{"code":201},"stageTimestamp":"2026-11-27T10:06:00.000000Z"}
{"kind":"Event","level":"Metadata","auditID":"a4","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/dev/configmaps","verb":"list","user":{"username":"bob@acme.dev"},"objectRef":{"resource":"configmaps","namespace":"dev","apiVersion":"v1"},"responseStatus":{"code":200},"stageTimestamp":"2026-11-27T10:07:00.000000Z"}
{"kind":"Event","level":"Metadata","auditID":"a5","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/dev/configmaps","verb":"create","user":{"username":"carol@acme.dev"},"objectRef":{"resource":"configmaps","namespace":"dev","name":"y","apiVersion":"v1"},"responseStatus":{"code":403},"stageTimestamp":"2026-11-27T10:08:00.000000Z"}
{"kind":"Event","level":"Metadata","auditID":"a6","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/dev/configmaps/z","verb":"delete","user":{"username":"dave@acme.dev"},"objectRef":{"resource":"configmaps","namespace":"dev","name":"z","apiVersion":"v1"},"responseStatus":{"code":200},"stageTimestamp":"2026-11-27T10:09:00.000000Z"}
`

func loggingFixture(t *testing.T) *loggingSrv {
	t.Helper()
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "admin.kubeconfig")
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(auditLogPath(kubeconfig), []byte(auditLines+"{partial"), 0o600); err != nil {
		t.Fatal(err)
	}
	gke := &container{clusters: map[string]*cluster{
		"acme/us-central1/platform": {loc: loc{"acme", "us-central1"}, c: &containerpb.Cluster{Name: "platform"},
			provision: &provisioned{kubeconfig: kubeconfig}},
		"other/us-central1/x": {loc: loc{"other", "us-central1"}, c: &containerpb.Cluster{Name: "x"},
			provision: &provisioned{kubeconfig: kubeconfig}},
	}}
	return &loggingSrv{gke: gke}
}

func payload(t *testing.T, e *loggingpb.LogEntry) *audit.AuditLog {
	t.Helper()
	var a audit.AuditLog
	if err := e.GetProtoPayload().UnmarshalTo(&a); err != nil {
		t.Fatal(err)
	}
	return &a
}

func TestListLogEntriesShapesGKEAuditEntries(t *testing.T) {
	l := loggingFixture(t)
	resp, err := l.ListLogEntries(context.Background(), &loggingpb.ListLogEntriesRequest{
		ResourceNames: []string{"projects/acme"},
		Filter:        `logName="projects/acme/logs/cloudaudit.googleapis.com%2Factivity" AND resource.type="k8s_cluster" AND resource.labels.cluster_name="platform" AND protoPayload.resourceName:"/namespaces/prod/"`,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Entries) != 2 {
		t.Fatalf("want the 2 writes into prod, got %d", len(resp.Entries))
	}
	first, second := payload(t, resp.Entries[0]), payload(t, resp.Entries[1])
	if first.MethodName != "io.k8s.apps.v1.deployments.create" || first.ResourceName != "apps/v1/namespaces/prod/deployments/web" ||
		first.AuthenticationInfo.PrincipalEmail != "alice@acme.dev" || first.ServiceName != "k8s.io" {
		t.Fatalf("first entry: %v", first)
	}
	if second.MethodName != "io.k8s.apps.v1.deployments.scale.patch" || second.ResourceName != "apps/v1/namespaces/prod/deployments/web/scale" {
		t.Fatalf("second entry: %v", second)
	}
	r := resp.Entries[0].Resource
	if r.Type != "k8s_cluster" || r.Labels["project_id"] != "acme" || r.Labels["location"] != "us-central1" {
		t.Fatalf("resource: %v", r)
	}
}

func TestListLogEntriesLeavesOutReadsAndDryRunsAndKeepsRefusals(t *testing.T) {
	l := loggingFixture(t)
	resp, err := l.ListLogEntries(context.Background(), &loggingpb.ListLogEntriesRequest{
		ResourceNames: []string{"projects/acme"}, Filter: `protoPayload.resourceName:"/namespaces/dev/"`, OrderBy: "timestamp desc",
	})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range resp.Entries {
		a := payload(t, e)
		got = append(got, fmt.Sprintf("%s %d", a.MethodName, a.GetStatus().GetCode()))
	}
	want := []string{"io.k8s.core.v1.configmaps.delete 0", "io.k8s.core.v1.configmaps.create 7"} // 7: PERMISSION_DENIED
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestListLogEntriesTimestampAndPaging(t *testing.T) {
	l := loggingFixture(t)
	req := &loggingpb.ListLogEntriesRequest{ResourceNames: []string{"projects/acme"},
		Filter: `timestamp>="2026-11-27T10:05:00Z"`, PageSize: 1}
	var n int
	for {
		resp, err := l.ListLogEntries(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		n += len(resp.Entries)
		if resp.NextPageToken == "" {
			break
		}
		req.PageToken = resp.NextPageToken
	}
	if n != 3 {
		t.Fatalf("want 3 entries at or after 10:05 (scale, refused create, delete), got %d", n)
	}
}

func TestListLogEntriesRefusesWhatItCannotEvaluate(t *testing.T) {
	l := loggingFixture(t)
	for _, req := range []*loggingpb.ListLogEntriesRequest{
		{ResourceNames: []string{"projects/acme"}, Filter: `jsonPayload.x="y"`},
		{ResourceNames: []string{"projects/acme"}, Filter: `logName="a" OR logName="b"`},
		{ResourceNames: []string{"organizations/1"}},
		{ResourceNames: []string{"projects/acme"}, OrderBy: "severity"},
		{},
	} {
		if _, err := l.ListLogEntries(context.Background(), req); status.Code(err) != codes.InvalidArgument {
			t.Fatalf("%v: want INVALID_ARGUMENT, got %v", req, err)
		}
	}
}
