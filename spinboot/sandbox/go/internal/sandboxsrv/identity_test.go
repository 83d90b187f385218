package sandboxsrv

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"cloud.google.com/go/iam/apiv1/iampb"
	"google.golang.org/genproto/googleapis/type/expr"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

const sa = "spinnaker@acme-platform.iam.gserviceaccount.com"

func TestTokenMintVerifyAndForgery(t *testing.T) {
	tok := MintToken("s3cret", sa)
	if email, ok := VerifyToken("s3cret", tok); !ok || email != sa {
		t.Fatalf("VerifyToken(own token) = %q, %v", email, ok)
	}
	// Another secret, a changed email, a truncated MAC: none verifies.
	other := MintToken("s3cret", "owner@acme-platform.iam.gserviceaccount.com")
	forged := other[:strings.LastIndexByte(other, '.')] + tok[strings.LastIndexByte(tok, '.'):]
	for _, bad := range []string{MintToken("other", sa), forged, tok[:len(tok)-2], "sbx1.", "sbx1..", ""} {
		if _, ok := VerifyToken("s3cret", bad); ok {
			t.Errorf("VerifyToken(%q) accepted", bad)
		}
	}
	if _, ok := VerifyToken("", MintToken("", sa)); ok {
		t.Error("an empty secret verified a token")
	}
}

func TestCallerFromBearer(t *testing.T) {
	tok := MintToken("s3cret", sa)
	for header, want := range map[string]Caller{
		"":                                   {},
		"Bearer s3cret":                      {}, // the admin token is the operator's
		"Basic b2F1dGgyYWNjZXNzdG9rZW46eA==": {},
		"Bearer ya29.some-google-token":      {}, // not an identity token: the operator's clients, unchecked
		"Bearer " + tok:                      {Member: "serviceAccount:" + sa},
		"bearer  " + tok + " ":               {Member: "serviceAccount:" + sa},
		"Bearer " + MintToken("x", sa):       {Invalid: true},
	} {
		if got := CallerFromBearer("s3cret", header); got != want {
			t.Errorf("CallerFromBearer(%q) = %+v, want %+v", header, got, want)
		}
	}
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+tok))
	if c := CallerFromContext(ctx, "s3cret"); c.Member != "serviceAccount:"+sa || c.Operator() {
		t.Errorf("CallerFromContext = %+v", c)
	}
}

func writeRoles(t *testing.T) *Roles {
	t.Helper()
	p := filepath.Join(t.TempDir(), "roles.json")
	doc := `{"roles": {"roles/storage.objectAdmin": {"permissions": ["storage.objects.get", "storage.objects.create"]},
		"roles/storage.legacyBucketReader": {"permissions": ["storage.buckets.get", "storage.objects.list"]},
		"roles/storage.admin": {"permissions": ["storage.buckets.get", "storage.objects.get"]}}}`
	if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := LoadRoles(p)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestEvaluate(t *testing.T) {
	r := writeRoles(t)
	member := "serviceAccount:" + sa
	pol := &iampb.Policy{Bindings: []*iampb.Binding{
		{Role: "roles/storage.objectAdmin", Members: []string{member}},
		{Role: "roles/storage.legacyBucketReader", Members: []string{member}, Condition: &expr.Expr{Expression: "true"}},
	}}
	g := &Gate{Secret: "s", Roles: r}
	if !g.Allowed(member, "storage.objects.get", "b", pol) {
		t.Error("objectAdmin does not grant storage.objects.get")
	}
	// front50's startup call: objectAdmin lacks it, and a conditional binding grants nothing in the sandbox.
	if g.Allowed(member, "storage.buckets.get", "b", pol) {
		t.Error("storage.buckets.get granted without an unconditional role holding it")
	}
	if g.Allowed("serviceAccount:other@x.iam.gserviceaccount.com", "storage.objects.get", "b", pol) {
		t.Error("a binding for one member granted another")
	}
	if g.Allowed(member, "storage.objects.get", "b", nil) {
		t.Error("no policy granted something")
	}
	pub := &iampb.Policy{Bindings: []*iampb.Binding{{Role: "roles/storage.legacyBucketReader", Members: []string{"allAuthenticatedUsers"}}}}
	if !g.Allowed(member, "storage.buckets.get", "b", pub) {
		t.Error("allAuthenticatedUsers does not include a service account")
	}
	if got := g.Granted(member, []string{"storage.objects.get", "storage.buckets.get", "storage.objects.create"}, "b", pol); strings.Join(got, ",") != "storage.objects.get,storage.objects.create" {
		t.Errorf("Granted = %v", got)
	}
	msg := r.DeniedMessage(member, "storage.buckets.get", "b")
	for _, want := range []string{sa, "storage.buckets.get", "roles/storage.admin, roles/storage.legacyBucketReader"} {
		if !strings.Contains(msg, want) {
			t.Errorf("DeniedMessage %q lacks %q", msg, want)
		}
	}
	var nilRoles *Roles
	if nilRoles.Holds("roles/storage.admin", "storage.buckets.get") {
		t.Error("no role table granted a permission")
	}
}

func TestGateAuthorize(t *testing.T) {
	g := &Gate{Secret: "s3cret", Roles: writeRoles(t)}
	member := "serviceAccount:" + sa
	policy := func(res string) *iampb.Policy {
		if res != "b" {
			return nil
		}
		return &iampb.Policy{Bindings: []*iampb.Binding{{Role: "roles/storage.objectAdmin", Members: []string{member}}}}
	}
	resolve := func(method string, req any) ([]Check, bool) {
		switch method {
		case "/x/Get":
			return []Check{{"storage.objects.get", "b"}}, true
		case "/x/Bucket":
			return []Check{{"storage.buckets.get", "b"}}, true
		case "/x/Test":
			return nil, true
		}
		return nil, false
	}
	id := Caller{Member: member}
	for _, tc := range []struct {
		caller Caller
		method string
		want   codes.Code
		text   string
	}{
		{Caller{}, "/x/Anything", codes.OK, ""},
		{Caller{Invalid: true}, "/x/Get", codes.Unauthenticated, "invalid authentication credentials"},
		{id, "/x/Get", codes.OK, ""},
		{id, "/x/Test", codes.OK, ""},
		{id, "/x/Bucket", codes.PermissionDenied, "does not have storage.buckets.get access to b"},
		{id, "/x/Unmodelled", codes.PermissionDenied, "only the operator"},
	} {
		err := g.authorize(tc.caller, tc.method, nil, resolve, policy)
		if status.Code(err) != tc.want || (tc.text != "" && !strings.Contains(err.Error(), tc.text)) {
			t.Errorf("%+v %s: %v, want %s containing %q", tc.caller, tc.method, err, tc.want, tc.text)
		}
	}
}
