package sandboxsrv

import (
	"context"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestParseAndMatch(t *testing.T) {
	rules, err := ParseFaults("container.v1.ClusterManager/CreateCluster=UNAVAILABLE:count=2; *=RESOURCE_EXHAUSTED:rate=0.5\nGetTopic=OK:delay=1ms")
	if err != nil || len(rules) != 3 {
		t.Fatalf("parse: %v %v", rules, err)
	}
	const create = "/google.container.v1.ClusterManager/CreateCluster"
	for _, tc := range []struct {
		pattern, method string
		want            bool
	}{
		{"container.v1.ClusterManager/CreateCluster", create, true},
		{"google.container.v1.ClusterManager/CreateCluster", create, true},
		{"ClusterManager/CreateCluster", create, true},
		{"CreateCluster", create, true},
		{"ClusterManager/*", create, true},
		{"Manager/*", create, false},
		{"ClusterManager/GetCluster", create, false},
		{"*", create, true},
	} {
		if got := (&Fault{Method: tc.pattern}).matches(tc.method); got != tc.want {
			t.Errorf("%q matches %q = %v, want %v", tc.pattern, tc.method, got, tc.want)
		}
	}
	for _, bad := range []string{"x", "=UNAVAILABLE", "x=NOPE", "x=UNAVAILABLE:count=0", "x=UNAVAILABLE:rate=2", "x=OK:what=1"} {
		if _, err := ParseFaults(bad); err == nil {
			t.Errorf("ParseFaults(%q) accepted", bad)
		}
	}
}

func TestCountRetires(t *testing.T) {
	fs := &Faults{}
	rules, _ := ParseFaults("CreateCluster=UNAVAILABLE:count=2")
	fs.Add(rules)
	m := "/google.container.v1.ClusterManager/CreateCluster"
	for i := 0; i < 3; i++ {
		_, err := fs.apply(context.Background(), m)
		if want := i < 2; (status.Code(err) == codes.Unavailable) != want {
			t.Fatalf("call %d: err=%v", i, err)
		}
	}
}

func TestKind(t *testing.T) {
	for m, want := range map[string]string{
		"/google.container.v1.ClusterManager/GetOperation":  "read",
		"/google.container.v1.ClusterManager/CreateCluster": "mutating",
		"/google.iam.v1.IAMPolicy/TestIamPermissions":       "read",
		"/google.iam.v1.IAMPolicy/SetIamPolicy":             "mutating",
		"/google.pubsub.v1.Subscriber/StreamingPull":        "data",
	} {
		if got := Kind(m); got != want {
			t.Errorf("Kind(%s) = %s, want %s", m, got, want)
		}
	}
}

func TestResetRuleParsesAsAConnectionReset(t *testing.T) {
	rules, err := ParseFaults("Subscriber/*=RESET:rate=0.5")
	if err != nil {
		t.Fatal(err)
	}
	if !rules[0].reset || rules[0].code != codes.Unavailable {
		t.Fatalf("%+v", rules[0])
	}
}

func TestAfterOption(t *testing.T) {
	rules, err := ParseFaults("CreateCluster=UNAVAILABLE:after:count=1")
	if err != nil {
		t.Fatal(err)
	}
	if !rules[0].After || rules[0].Count != 1 {
		t.Fatalf("%+v", rules[0])
	}
}
