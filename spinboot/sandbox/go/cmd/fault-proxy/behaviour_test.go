package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func TestMatchByVerbAndPathSubstring(t *testing.T) {
	rules, err := parseRules("PATCH /rolebindings/=500; * /serviceaccounts=429; GET=503")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		rule         int
		method, path string
		want         bool
	}{
		{0, "PATCH", "/apis/rbac.authorization.k8s.io/v1/namespaces/a/rolebindings/x", true},
		{0, "GET", "/apis/rbac.authorization.k8s.io/v1/namespaces/a/rolebindings/x", false},
		{0, "PATCH", "/apis/rbac.authorization.k8s.io/v1/namespaces/a/roles/x", false},
		{1, "POST", "/api/v1/namespaces/a/serviceaccounts/sa/token", true},
		{1, "DELETE", "/api/v1/namespaces/a/serviceaccounts/sa", true},
		{1, "GET", "/api/v1/namespaces/a/secrets", false},
		{2, "GET", "/anything", true},
		{2, "POST", "/anything", false},
	} {
		if got := rules[tc.rule].matches(tc.method, tc.path); got != tc.want {
			t.Errorf("rule %q on %s %s = %v, want %v", rules[tc.rule].Match, tc.method, tc.path, got, tc.want)
		}
	}
}

func TestErrorBodies(t *testing.T) {
	for _, tc := range []struct {
		style, spec string
		status      int
		retryAfter  string
		want        string
	}{
		{"kubernetes", "*=429", 429, "1", `"reason":"TooManyRequests"`},
		{"kubernetes", "*=500", 500, "", `"reason":"InternalError"`},
		{"kubernetes", "*=503", 503, "1", `"reason":"ServiceUnavailable"`},
		{"google", "*=429", 429, "1", `"status":"RESOURCE_EXHAUSTED"`},
		{"google", "*=500", 500, "", `"status":"INTERNAL"`},
		{"google", "*=503:msg=try later", 503, "1", `"message":"try later"`},
	} {
		front, p := newProxy(t, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}), tc.spec)
		p.style = tc.style
		resp, err := http.Get(front.URL + "/storage/v1/b/x")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var parsed map[string]any
		if resp.StatusCode != tc.status || resp.Header.Get("Retry-After") != tc.retryAfter ||
			!strings.Contains(string(body), tc.want) || json.Unmarshal(body, &parsed) != nil {
			t.Errorf("%s %s: %d Retry-After=%q %s", tc.style, tc.spec, resp.StatusCode, resp.Header.Get("Retry-After"), body)
		}
		if tc.style == "kubernetes" && (parsed["kind"] != "Status" || parsed["code"] != float64(tc.status)) {
			t.Errorf("not a Status: %s", body)
		}
		if tc.style == "google" && parsed["error"].(map[string]any)["code"] != float64(tc.status) {
			t.Errorf("not a Google error: %s", body)
		}
	}
}

func TestLegacyWatchPathCountsAsItsResource(t *testing.T) {
	r := httptest.NewRequest("GET", "/api/v1/watch/namespaces/a/configmaps", nil)
	if key, kind := classify(r, "kubernetes"); key != "GET configmaps" || kind != "read" || !isWatch(r) {
		t.Fatalf("%q %q %v", key, kind, isWatch(r))
	}
}

func TestOKDelayOnlyAddsLatency(t *testing.T) {
	var hits atomic.Int32
	front, p := newProxy(t, http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hits.Add(1) }), "GET=OK:delay=80ms")
	t0 := time.Now()
	resp, err := http.Get(front.URL + "/api/v1/namespaces")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || hits.Load() != 1 || time.Since(t0) < 80*time.Millisecond {
		t.Fatalf("status %d, hits %d, took %v", resp.StatusCode, hits.Load(), time.Since(t0))
	}
	c := p.counts.snapshot()["methods"].(map[string]count)["GET namespaces"]
	if c.Calls != 1 || c.Injected != 1 || c.Errors != 0 || c.Kind != "read" {
		t.Fatalf("counts: %+v", c)
	}
}

func TestHeadersAndBodyForwardedUntouched(t *testing.T) {
	var auth, body string
	front, _ := newProxy(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth = r.Header.Get("Authorization")
		b, _ := io.ReadAll(r.Body)
		body = string(b)
		w.Header().Set("X-Upstream", "yes")
		w.WriteHeader(201)
	}), "")
	req, _ := http.NewRequest("PATCH", front.URL+"/api/v1/namespaces/a/configmaps/c?fieldManager=spinboot", strings.NewReader(`{"a":1}`))
	req.Header.Set("Authorization", "Bearer sekrit")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if auth != "Bearer sekrit" || body != `{"a":1}` || resp.StatusCode != 201 || resp.Header.Get("X-Upstream") != "yes" {
		t.Fatalf("auth %q body %q status %d", auth, body, resp.StatusCode)
	}
}

// A reset is a real TCP RST: the client's read fails with ECONNRESET, not with a clean EOF.
func TestResetIsATCPReset(t *testing.T) {
	var hits atomic.Int32
	front, p := newProxy(t, http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hits.Add(1) }), "POST=RESET:count=1")
	conn, err := net.Dial("tcp", strings.TrimPrefix(front.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "POST /api/v1/namespaces HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = io.ReadAll(conn)
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("want ECONNRESET, got %v", err)
	}
	if hits.Load() != 0 {
		t.Fatal("RESET without :after reached upstream")
	}
	c := p.counts.snapshot()["methods"].(map[string]count)["POST namespaces"]
	if c.Codes["RESET"] != 1 || c.Injected != 1 || c.Errors != 1 {
		t.Fatalf("counts: %+v", c)
	}
}

// Watches stream: each event reaches the client as the upstream flushes it, not when the response ends.
func TestWatchStreamsThrough(t *testing.T) {
	next := make(chan struct{})
	var hits atomic.Int32
	watch := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		for i := 0; i < 2; i++ {
			io.WriteString(w, `{"type":"ADDED"}`+"\n")
			w.(http.Flusher).Flush()
			select {
			case <-next:
			case <-r.Context().Done():
				return
			}
		}
	})
	// An :after fault cannot wait for a watch to end: the watch fails before it starts instead.
	armed, _ := newProxy(t, watch, "*=500:after")
	resp, err := http.Get(armed.URL + "/api/v1/namespaces/a/configmaps?watch=True")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 500 || hits.Load() != 0 {
		t.Fatalf("armed watch: %d, upstream hits %d", resp.StatusCode, hits.Load())
	}

	front, _ := newProxy(t, watch, "")
	resp, err = http.Get(front.URL + "/api/v1/namespaces/a/configmaps?watch=true")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	defer close(next)
	br := bufio.NewReader(resp.Body)
	got := make(chan string, 1)
	go func() { line, _ := br.ReadString('\n'); got <- line }()
	select {
	case line := <-got:
		if !strings.Contains(line, "ADDED") {
			t.Fatalf("event: %q", line)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("first event not streamed while the response is still open")
	}
}

func TestAdminEndpoint(t *testing.T) {
	_, p := newProxy(t, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}), "GET=500")
	admin := httptest.NewServer(p.adminMux())
	t.Cleanup(admin.Close)
	call := func(method, path, body string) (int, map[string]any) {
		req, _ := http.NewRequest(method, admin.URL+path, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	n := func(out map[string]any) int { return len(out["faults"].([]any)) }
	if code, out := call("POST", "/faults", "PATCH=429:count=2;*=RESET:rate=0.1"); code != 200 || n(out) != 3 {
		t.Fatalf("POST appends: %d %v", code, out)
	}
	if code, _ := call("PUT", "/faults", "*=teapot"); code != 400 {
		t.Fatalf("bad spec: %d", code)
	}
	if _, out := call("GET", "/faults", ""); n(out) != 3 {
		t.Fatalf("a bad spec changed the rules: %v", out)
	}
	if _, out := call("PUT", "/faults", "*=503:after"); n(out) != 1 || out["faults"].([]any)[0].(map[string]any)["after"] != true {
		t.Fatalf("PUT replaces: %v", out)
	}
	if _, out := call("DELETE", "/faults", ""); n(out) != 0 {
		t.Fatalf("DELETE clears: %v", out)
	}
	p.counts.begin("GET namespaces", "read")
	if _, out := call("GET", "/counts", ""); out["totals"].(map[string]any)["read"] != float64(1) {
		t.Fatalf("counts: %v", out)
	}
	if _, out := call("DELETE", "/counts", ""); len(out["methods"].(map[string]any)) != 0 {
		t.Fatalf("reset counts: %v", out)
	}
	if code, _ := call("GET", "/healthz", ""); code != 200 {
		t.Fatal("healthz")
	}
}
