package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"spinboot.dev/sandbox/internal/sandboxsrv"
)

func TestMapGCS(t *testing.T) {
	for _, tc := range []struct {
		method, path, query string
		want                string // "perm@resource ..." then " write=B/O" or " name-in-body"; "?" = not modelled
	}{
		{"GET", "/storage/v1/b/acme", "", "storage.buckets.get@acme"},
		{"PATCH", "/storage/v1/b/acme", "", "storage.buckets.update@acme"},
		{"GET", "/storage/v1/b/acme/iam", "", "storage.buckets.getIamPolicy@acme"},
		{"PUT", "/storage/v1/b/acme/iam", "", "storage.buckets.setIamPolicy@acme"},
		{"GET", "/storage/v1/b", "project=p", "storage.buckets.list@projects/p"},
		{"GET", "/storage/v1/b/acme/o", "prefix=front50/", "storage.objects.list@acme"},
		{"GET", "/storage/v1/b/acme/o/front50%2Fpipelines%2Flast-modified", "", "storage.objects.get@acme"},
		{"GET", "/storage/v1/b/acme/o/a%2Fb", "alt=media", "storage.objects.get@acme"},
		{"GET", "/download/storage/v1/b/acme/o/a%2Fb", "alt=media", "storage.objects.get@acme"},
		{"DELETE", "/storage/v1/b/acme/o/a%2Fb", "", "storage.objects.delete@acme"},
		{"POST", "/upload/storage/v1/b/acme/o", "uploadType=media&name=a%2Fb", "storage.objects.create@acme write=acme/a/b"},
		{"POST", "/upload/storage/v1/b/acme/o", "uploadType=multipart", "storage.objects.create@acme name-in-body"},
		{"PUT", "/upload/storage/v1/b/acme/o", "uploadType=resumable&upload_id=xyz", ""},
		{"POST", "/storage/v1/b/src/o/a/copyTo/b/dst/o/b%2Fc", "", "storage.objects.get@src storage.objects.create@dst write=dst/b/c"},
		{"POST", "/storage/v1/b/acme/o/out/compose", "", "storage.objects.get@acme storage.objects.create@acme write=acme/out"},
		{"GET", "/storage/v1/b/acme/acl", "", "?"},
		{"GET", "/storage/v1/b/acme/o/x/acl", "", "?"},
		{"POST", "/batch/storage/v1", "", "?"},
		{"GET", "/b/acme", "", "?"}, // the emulator's alias, not a Cloud Storage path
		{"GET", "/wipe", "", "?"},
	} {
		q, _ := url.ParseQuery(tc.query)
		c, ok := mapGCS(tc.method, tc.path, q)
		got := "?"
		if ok {
			var parts []string
			for _, ch := range c.checks {
				parts = append(parts, ch.Permission+"@"+ch.Resource)
			}
			if c.writeObject != "" {
				parts = append(parts, "write="+c.writeBucket+"/"+c.writeObject)
			}
			if c.nameInBody {
				parts = append(parts, "name-in-body")
			}
			got = strings.Join(parts, " ")
		}
		if got != tc.want {
			t.Errorf("%s %s?%s: %q, want %q", tc.method, tc.path, tc.query, got, tc.want)
		}
	}
}

// fakeGCS is just enough of the JSON API for the gate: a bucket policy, objects that exist, and a log of what
// reached it (with the Authorization header each call carried).
type fakeGCS struct {
	mu       sync.Mutex
	bindings []map[string]any
	objects  map[string]bool
	seen     []string
}

func (f *fakeGCS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seen = append(f.seen, r.Method+" "+r.URL.EscapedPath()+" auth="+r.Header.Get("Authorization"))
	switch {
	case r.URL.Path == "/storage/v1/b/acme/iam":
		_ = json.NewEncoder(w).Encode(map[string]any{"bindings": f.bindings})
	case strings.HasPrefix(r.URL.Path, "/storage/v1/b/acme/o/") && r.Method == http.MethodGet:
		if !f.objects[strings.TrimPrefix(r.URL.Path, "/storage/v1/b/acme/o/")] {
			http.NotFound(w, r)
			return
		}
		_, _ = io.WriteString(w, `{"name": "x"}`)
	case strings.HasPrefix(r.URL.Path, "/storage/v1/b/") && strings.Count(r.URL.Path, "/") == 4 && r.URL.Path != "/storage/v1/b/acme":
		http.NotFound(w, r)
	default:
		_, _ = io.WriteString(w, `{}`)
	}
}

func TestStorageGate(t *testing.T) {
	roles := filepath.Join(t.TempDir(), "roles.json")
	_ = os.WriteFile(roles, []byte(`{"roles": {
		"roles/storage.objectAdmin": {"permissions": ["storage.objects.get", "storage.objects.create", "storage.objects.delete", "storage.objects.list"]},
		"roles/storage.objectCreator": {"permissions": ["storage.objects.create"]},
		"roles/storage.legacyBucketReader": {"permissions": ["storage.buckets.get", "storage.objects.list"]}}}`), 0o600)
	r, err := sandboxsrv.LoadRoles(roles)
	if err != nil {
		t.Fatal(err)
	}
	gcs := &fakeGCS{objects: map[string]bool{"front50/exists": true}}
	front, p := newProxy(t, gcs, "")
	p.style = "google"
	p.gate = &storageGate{gate: &sandboxsrv.Gate{Secret: "admin", Roles: r}, upstream: p.upstream, client: http.DefaultClient}
	member := "serviceAccount:spinnaker@acme-platform.iam.gserviceaccount.com"
	id := "Bearer " + sandboxsrv.MintToken("admin", "spinnaker@acme-platform.iam.gserviceaccount.com")
	grant := func(roles ...string) {
		gcs.mu.Lock()
		defer gcs.mu.Unlock()
		gcs.bindings = nil
		for _, role := range roles {
			gcs.bindings = append(gcs.bindings, map[string]any{"role": role, "members": []string{member}})
		}
	}
	call := func(method, path, auth, contentType, body string) (int, string) {
		req, _ := http.NewRequest(method, front.URL+path, strings.NewReader(body))
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	expect := func(code int, body string, wantCode int, wantText ...string) {
		t.Helper()
		if code != wantCode {
			t.Errorf("got %d %s, want %d", code, body, wantCode)
		}
		for _, w := range wantText {
			if !strings.Contains(body, w) {
				t.Errorf("body %s lacks %q", body, w)
			}
		}
	}

	code, body := call("GET", "/storage/v1/b/acme", id, "", "")
	expect(code, body, 403, `"reason":"forbidden"`, "does not have storage.buckets.get access to the Google Cloud Storage bucket",
		"roles/storage.legacyBucketReader")
	grant("roles/storage.objectAdmin")
	code, body = call("GET", "/storage/v1/b/acme/o/front50%2Fexists", id, "", "")
	expect(code, body, 200)
	code, body = call("GET", "/storage/v1/b/acme", id, "", "") // front50's startup call: objectAdmin lacks it
	expect(code, body, 403, "storage.buckets.get")
	grant("roles/storage.objectAdmin", "roles/storage.legacyBucketReader")
	code, body = call("GET", "/storage/v1/b/acme", id, "", "")
	expect(code, body, 200)

	// Uploads: creating needs create; replacing an existing object needs delete too (name in a multipart body).
	grant("roles/storage.objectCreator")
	code, body = call("POST", "/upload/storage/v1/b/acme/o?uploadType=media&name=front50%2Fnew", id, "text/plain", "x")
	expect(code, body, 200)
	multipart := "--B\r\nContent-Type: application/json\r\n\r\n{\"name\": \"front50/exists\"}\r\n--B\r\nContent-Type: text/plain\r\n\r\nx\r\n--B--\r\n"
	code, body = call("POST", "/upload/storage/v1/b/acme/o?uploadType=multipart", id, "multipart/related; boundary=B", multipart)
	expect(code, body, 403, "storage.objects.delete")
	code, body = call("POST", "/upload/storage/v1/b/acme/o?uploadType=multipart&ifGenerationMatch=0", id, "multipart/related; boundary=B", multipart)
	expect(code, body, 200)
	grant("roles/storage.objectAdmin")
	code, body = call("POST", "/upload/storage/v1/b/acme/o?uploadType=multipart", id, "multipart/related; boundary=B", multipart)
	expect(code, body, 200)

	code, body = call("GET", "/storage/v1/b/acme/iam/testPermissions?permissions=storage.objects.get&permissions=storage.buckets.get", id, "", "")
	expect(code, body, 200, `"permissions":["storage.objects.get"]`)
	code, body = call("GET", "/storage/v1/b/acme/acl", id, "", "")
	expect(code, body, 403, "only the operator")
	code, body = call("GET", "/storage/v1/b/acme", "Bearer "+sandboxsrv.MintToken("forged", "x@y.iam.gserviceaccount.com"), "", "")
	expect(code, body, 401, "Invalid Credentials", `"reason":"authError"`)
	code, body = call("GET", "/storage/v1/b/acme/acl", "", "", "") // the operator: unchecked
	expect(code, body, 200)

	// What reached upstream: never the identity's token; the operator's calls as they were.
	gcs.mu.Lock()
	defer gcs.mu.Unlock()
	for _, s := range gcs.seen {
		if strings.Contains(s, "sbx1.") {
			t.Errorf("identity token forwarded: %s", s)
		}
	}
	if c := p.counts.snapshot()["methods"].(map[string]count)["GET storage/v1/b/{}"]; c.Codes["403"] != 2 || c.Codes["401"] != 1 {
		t.Errorf("denials not counted: %+v", c)
	}
}
