package main

// --iam-gate storage: Cloud Storage IAM in front of the storage emulator (which keeps bucket policies but enforces
// nothing). A call carrying a sandbox identity token (Spinnaker's Workload Identity) is mapped to the permissions
// its JSON API method needs (https://cloud.google.com/storage/docs/access-control/iam-json), the bucket's policy
// is read from upstream as the operator, and the call is forwarded, without the token, only if the policy grants
// a role holding each permission. Calls without a token, or with the admin token, are the operator's and pass.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"

	"cloud.google.com/go/iam/apiv1/iampb"
	"google.golang.org/genproto/googleapis/type/expr"

	"spinboot.dev/sandbox/internal/sandboxsrv"
)

// gcsCall is what one JSON API request needs. Check.Resource is a bucket name, or "projects/P" for project-level
// permissions (bucket list/create), whose policy the sandbox's Storage does not hold: those are denied.
type gcsCall struct {
	checks []sandboxsrv.Check
	// The call writes this object: replacing an existing one also needs storage.objects.delete (iam-json page).
	writeBucket, writeObject string
	nameInBody               bool // an upload naming its object in the body (multipart metadata, resumable JSON)
	testPermissions          bool // bucket testIamPermissions: needs nothing, answers what the caller holds
	bucket                   string
}

func (c *gcsCall) need(perm, bucket string) {
	c.checks = append(c.checks, sandboxsrv.Check{Permission: perm, Resource: bucket})
}

// mapGCS maps a JSON API request (method, escaped path, query) to its permissions; ok=false for a request the
// sandbox does not model (ACLs, notifications, HMAC keys, batch, the emulator's own paths), which only the operator
// may make. Object names arrive percent-encoded (a '/' in a name is %2F), so segments are unescaped one by one.
func mapGCS(method, escapedPath string, q url.Values) (c gcsCall, ok bool) {
	var segs []string
	for _, s := range strings.Split(strings.Trim(escapedPath, "/"), "/") {
		u, err := url.PathUnescape(s)
		if err != nil {
			return c, false
		}
		segs = append(segs, u)
	}
	api := "json"
	switch {
	case len(segs) >= 3 && segs[0] == "storage" && segs[1] == "v1":
		segs = segs[2:]
	case len(segs) >= 4 && (segs[0] == "upload" || segs[0] == "download") && segs[1] == "storage" && segs[2] == "v1":
		api, segs = segs[0], segs[3:]
	default:
		return c, false
	}
	if len(segs) == 0 || segs[0] != "b" {
		return c, false
	}
	if len(segs) == 1 { // /b: list or create buckets in a project
		switch method {
		case http.MethodGet:
			c.need("storage.buckets.list", "projects/"+q.Get("project"))
		case http.MethodPost:
			c.need("storage.buckets.create", "projects/"+q.Get("project"))
		default:
			return c, false
		}
		return c, api == "json"
	}
	bucket, rest := segs[1], segs[2:]
	c.bucket = bucket
	if api == "upload" {
		if len(rest) != 1 || rest[0] != "o" {
			return c, false
		}
		if q.Get("upload_id") != "" {
			// A resumable session's later requests: its URI is the credential, checked when it was started
			// (https://cloud.google.com/storage/docs/resumable-uploads#session-uris).
			return c, method == http.MethodPut || method == http.MethodPost
		}
		if method != http.MethodPost {
			return c, false
		}
		c.need("storage.objects.create", bucket)
		c.writeBucket, c.writeObject = bucket, q.Get("name")
		c.nameInBody = c.writeObject == ""
		return c, true
	}
	if api == "download" {
		if len(rest) < 2 || rest[0] != "o" || method != http.MethodGet {
			return c, false
		}
		c.need("storage.objects.get", bucket)
		return c, true
	}
	switch {
	case len(rest) == 0:
		perm := map[string]string{http.MethodGet: "storage.buckets.get", http.MethodPatch: "storage.buckets.update",
			http.MethodPut: "storage.buckets.update", http.MethodDelete: "storage.buckets.delete"}[method]
		if perm == "" {
			return c, false
		}
		c.need(perm, bucket)
	case len(rest) == 1 && rest[0] == "iam":
		perm := map[string]string{http.MethodGet: "storage.buckets.getIamPolicy", http.MethodPut: "storage.buckets.setIamPolicy"}[method]
		if perm == "" {
			return c, false
		}
		c.need(perm, bucket)
	case len(rest) == 2 && rest[0] == "iam" && rest[1] == "testPermissions" && method == http.MethodGet:
		c.testPermissions = true
	case len(rest) == 1 && rest[0] == "o":
		switch method {
		case http.MethodGet:
			c.need("storage.objects.list", bucket)
		case http.MethodPost: // metadata-only insert
			c.need("storage.objects.create", bucket)
			c.writeBucket, c.nameInBody = bucket, true
		default:
			return c, false
		}
	case len(rest) >= 2 && rest[0] == "o":
		return c, mapObject(&c, method, bucket, rest[1:])
	default:
		return c, false
	}
	return c, true
}

// mapObject handles /b/B/o/NAME[/compose | /copyTo/b/D/o/DNAME | /rewriteTo/b/D/o/DNAME].
func mapObject(c *gcsCall, method, bucket string, rest []string) bool {
	n := len(rest)
	if n >= 5 && (rest[n-5] == "copyTo" || rest[n-5] == "rewriteTo") && rest[n-4] == "b" && rest[n-2] == "o" && method == http.MethodPost {
		if n == 5 {
			return false
		}
		c.need("storage.objects.get", bucket)
		c.need("storage.objects.create", rest[n-3])
		c.writeBucket, c.writeObject = rest[n-3], rest[n-1]
		return true
	}
	switch rest[n-1] {
	case "compose":
		if method != http.MethodPost || n == 1 {
			return false
		}
		c.need("storage.objects.get", bucket) // the source objects, in the same bucket
		c.need("storage.objects.create", bucket)
		c.writeBucket, c.writeObject = bucket, strings.Join(rest[:n-1], "/")
		return true
	case "acl", "restore":
		return false
	}
	perm := map[string]string{http.MethodGet: "storage.objects.get", http.MethodPatch: "storage.objects.update",
		http.MethodPut: "storage.objects.update", http.MethodDelete: "storage.objects.delete"}[method]
	if perm == "" {
		return false
	}
	c.need(perm, bucket)
	return true
}

// objectNameFromBody reads an upload's object name from its body (the first part of multipart/related, or the
// JSON of a resumable session start) and puts the body back for the upstream.
func objectNameFromBody(r *http.Request) string {
	body, err := io.ReadAll(io.LimitReader(r.Body, 256<<20))
	r.Body.Close()
	r.Body = io.NopCloser(bytes.NewReader(body))
	if err != nil {
		return ""
	}
	var meta struct {
		Name string `json:"name"`
	}
	mt, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if strings.HasPrefix(mt, "multipart/") {
		part, err := multipart.NewReader(bytes.NewReader(body), params["boundary"]).NextPart()
		if err != nil {
			return ""
		}
		_ = json.NewDecoder(part).Decode(&meta)
	} else {
		_ = json.Unmarshal(body, &meta)
	}
	return meta.Name
}

type storageGate struct {
	gate     *sandboxsrv.Gate
	upstream *url.URL
	client   *http.Client
}

// gcsError writes Cloud Storage's JSON error body (https://cloud.google.com/storage/docs/json_api/v1/status-codes).
func gcsError(w http.ResponseWriter, code int, reason, msg string) {
	e := map[string]any{"message": msg, "domain": "global", "reason": reason}
	if code == http.StatusUnauthorized {
		e["locationType"], e["location"] = "header", "Authorization"
		w.Header().Set("WWW-Authenticate", `Bearer realm="https://accounts.google.com/"`)
	}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{"code": code, "message": msg, "errors": []any{e}}})
}

// deniedText is Cloud Storage's wording for a missing permission, plus the roles that would grant it.
func (g *storageGate) deniedText(member, perm, resource string) string {
	what := "bucket"
	if strings.HasPrefix(perm, "storage.objects.") {
		what = "object"
	}
	if strings.HasPrefix(resource, "projects/") {
		what = "project " + strings.TrimPrefix(resource, "projects/")
	}
	msg := fmt.Sprintf("%s does not have %s access to the Google Cloud Storage %s. Permission '%s' denied on resource (or it may not exist).",
		strings.TrimPrefix(member, "serviceAccount:"), perm, what, perm)
	if roles := g.gate.Roles.RolesWith(perm); len(roles) > 0 {
		msg += " Roles that hold it: " + strings.Join(roles, ", ") + "."
	}
	return msg
}

// upstreamGet reads a JSON API path from the emulator as the operator; code 0 means the request itself failed.
func (g *storageGate) upstreamGet(r *http.Request, path string, into any) (int, error) {
	u := *g.upstream
	u.Path, u.RawPath, u.RawQuery = "", "", ""
	req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, u.String()+path, nil)
	if err != nil {
		return 0, err
	}
	resp, err := g.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK && into != nil {
		return resp.StatusCode, json.NewDecoder(resp.Body).Decode(into)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// policy reads a bucket's IAM policy (found=false: no such bucket, let upstream answer 404).
func (g *storageGate) policy(r *http.Request, bucket string) (p *iampb.Policy, found bool, err error) {
	var doc struct {
		Bindings []struct {
			Role      string          `json:"role"`
			Members   []string        `json:"members"`
			Condition json.RawMessage `json:"condition"`
		} `json:"bindings"`
	}
	code, err := g.upstreamGet(r, "/storage/v1/b/"+url.PathEscape(bucket)+"/iam", &doc)
	switch {
	case err != nil:
		return nil, false, err
	case code == http.StatusNotFound:
		return nil, false, nil
	case code != http.StatusOK:
		return nil, false, fmt.Errorf("reading the policy of bucket %s: HTTP %d", bucket, code)
	}
	p = &iampb.Policy{}
	for _, b := range doc.Bindings {
		nb := &iampb.Binding{Role: b.Role, Members: b.Members}
		if len(b.Condition) > 0 && string(b.Condition) != "null" {
			nb.Condition = &expr.Expr{} // evaluated as "grants nothing" (no CEL in the sandbox)
		}
		p.Bindings = append(p.Bindings, nb)
	}
	return p, true, nil
}

// check returns true if the request may go upstream (the identity's token then removed); otherwise it has
// answered the client and returns false with the status sent.
func (g *storageGate) check(w http.ResponseWriter, r *http.Request) (bool, int) {
	caller := sandboxsrv.CallerFromBearer(g.gate.Secret, r.Header.Get("Authorization"))
	if caller.Invalid {
		gcsError(w, http.StatusUnauthorized, "authError", "Invalid Credentials")
		return false, http.StatusUnauthorized
	}
	if caller.Operator() {
		return true, 0
	}
	deny := func(msg string) (bool, int) {
		gcsError(w, http.StatusForbidden, "forbidden", msg)
		return false, http.StatusForbidden
	}
	call, known := mapGCS(r.Method, r.URL.EscapedPath(), r.URL.Query())
	if !known {
		return deny(fmt.Sprintf("%s: the sandbox does not model the IAM permissions of %s %s, so only the operator may call it.",
			strings.TrimPrefix(caller.Member, "serviceAccount:"), r.Method, r.URL.Path))
	}
	if call.nameInBody {
		call.writeObject = objectNameFromBody(r)
	}
	policies := map[string]*iampb.Policy{}
	lookup := func(bucket string) (*iampb.Policy, bool, error) {
		if p, ok := policies[bucket]; ok {
			return p, p != nil, nil
		}
		p, found, err := g.policy(r, bucket)
		if err == nil {
			policies[bucket] = p
		}
		return p, found, err
	}
	fail := func(err error) (bool, int) {
		gcsError(w, http.StatusBadGateway, "backendError", "sandbox IAM gate: "+err.Error())
		return false, http.StatusBadGateway
	}
	if call.testPermissions {
		p, _, err := lookup(call.bucket)
		if err != nil {
			return fail(err)
		}
		w.Header().Set("Content-Type", "application/json; charset=UTF-8")
		_ = json.NewEncoder(w).Encode(map[string]any{"kind": "storage#testIamPermissionsResponse",
			"permissions": g.gate.Granted(caller.Member, r.URL.Query()["permissions"], call.bucket, p)})
		return false, http.StatusOK
	}
	if call.writeObject != "" && r.URL.Query().Get("ifGenerationMatch") != "0" {
		code, err := g.upstreamGet(r, "/storage/v1/b/"+url.PathEscape(call.writeBucket)+"/o/"+url.PathEscape(call.writeObject), nil)
		if err != nil {
			return fail(err)
		}
		if code == http.StatusOK {
			call.need("storage.objects.delete", call.writeBucket)
		}
	}
	for _, ch := range call.checks {
		var p *iampb.Policy
		if !strings.HasPrefix(ch.Resource, "projects/") {
			var found bool
			var err error
			if p, found, err = lookup(ch.Resource); err != nil {
				return fail(err)
			} else if !found {
				continue // no such bucket: upstream answers 404, as Storage does
			}
		}
		if !g.gate.Allowed(caller.Member, ch.Permission, ch.Resource, p) {
			return deny(g.deniedText(caller.Member, ch.Permission, ch.Resource))
		}
	}
	r.Header.Del("Authorization")
	return true, 0
}
