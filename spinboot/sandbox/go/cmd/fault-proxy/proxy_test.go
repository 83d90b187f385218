package main

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
)

func newProxy(t *testing.T, upstream http.Handler, spec string) (*httptest.Server, *proxy) {
	t.Helper()
	up := httptest.NewServer(upstream)
	t.Cleanup(up.Close)
	u, _ := url.Parse(up.URL)
	p := &proxy{rules: &ruleSet{}, counts: newCounters(), style: "kubernetes", upstream: u}
	p.rp = &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(u) }, FlushInterval: -1}
	rules, err := parseRules(spec)
	if err != nil {
		t.Fatal(err)
	}
	p.rules.add(rules)
	front := httptest.NewServer(p)
	t.Cleanup(front.Close)
	return front, p
}

func TestParseRules(t *testing.T) {
	rules, err := parseRules("*=429:count=2; PATCH /rolebindings/=RESET:after:rate=0.5\nGET=OK:delay=10ms")
	if err != nil {
		t.Fatal(err)
	}
	if len(rules) != 3 || rules[0].status != 429 || rules[0].Count != 2 || rules[0].Unlimited {
		t.Fatalf("rule 0: %+v", rules[0])
	}
	if r := rules[1]; r.verb != "PATCH" || r.substr != "/rolebindings/" || !r.After || r.Rate != 0.5 || r.Code != "RESET" {
		t.Fatalf("rule 1: %+v", r)
	}
	for _, bad := range []string{"*=200", "*=UNAVAILABLE", "=500", "*=500:rate=2", "*=500:count=0", "*=500:bogus=1"} {
		if _, err := parseRules(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestClassify(t *testing.T) {
	for path, want := range map[string]string{
		"/api/v1/namespaces":      "namespaces",
		"/api/v1/namespaces/prod": "namespaces",
		"/api/v1/namespaces/prod/serviceaccounts/spinnaker/token":           "serviceaccounts/token",
		"/apis/rbac.authorization.k8s.io/v1/namespaces/prod/rolebindings/x": "rolebindings",
		"/apis/authorization.k8s.io/v1/subjectaccessreviews":                "subjectaccessreviews",
		"/apis/apps/v1/deployments":                                         "deployments",
		"/readyz":                                                           "/readyz",
	} {
		r := httptest.NewRequest("POST", path, nil)
		key, kind := classify(r, "kubernetes")
		if key != "POST "+want {
			t.Errorf("%s: key %q, want %q", path, key, "POST "+want)
		}
		if wantKind := map[bool]string{true: "read", false: "mutating"}[want == "subjectaccessreviews"]; kind != wantKind {
			t.Errorf("%s: kind %q", path, kind)
		}
	}
	r := httptest.NewRequest("GET", "/storage/v1/b/acme/iam", nil)
	if key, kind := classify(r, "google"); key != "GET storage/v1/b/{}/iam" || kind != "read" {
		t.Errorf("google: %q %q", key, kind)
	}
}

func TestStatusFaultNeverReachesUpstream(t *testing.T) {
	var hits atomic.Int32
	front, p := newProxy(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }), "POST=429:count=1")
	resp, err := http.Post(front.URL+"/api/v1/namespaces/a/configmaps", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "1" || !strings.Contains(string(body), `"reason":"TooManyRequests"`) {
		t.Fatalf("got %d %q %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	if hits.Load() != 0 {
		t.Fatal("a failed-before call reached upstream")
	}
	resp, _ = http.Post(front.URL+"/api/v1/namespaces/a/configmaps", "application/json", strings.NewReader("{}"))
	resp.Body.Close()
	if resp.StatusCode != 200 || hits.Load() != 1 {
		t.Fatalf("count=1 should retire after one firing: %d, %d hits", resp.StatusCode, hits.Load())
	}
	c := p.counts.snapshot()["methods"].(map[string]count)["POST configmaps"]
	if c.Calls != 2 || c.Injected != 1 || c.Codes["429"] != 1 || c.Kind != "mutating" {
		t.Fatalf("counts: %+v", c)
	}
}

func TestAfterFaultTakesEffectUpstream(t *testing.T) {
	var hits atomic.Int32
	front, _ := newProxy(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }), "*=500:after")
	resp, err := http.Post(front.URL+"/x", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 500 || hits.Load() != 1 {
		t.Fatalf("status %d, upstream hits %d", resp.StatusCode, hits.Load())
	}
}

func TestResetDropsTheConnection(t *testing.T) {
	var hits atomic.Int32
	front, _ := newProxy(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }), "GET=RESET:after")
	_, err := http.Get(front.URL + "/y")
	if err == nil {
		t.Fatal("a reset call succeeded")
	}
	if !errors.Is(err, syscall.ECONNRESET) && !strings.Contains(err.Error(), "EOF") {
		t.Logf("error (accepted): %v", err)
	}
	if hits.Load() != 1 {
		t.Fatalf("RESET:after should reach upstream once, got %d", hits.Load())
	}
}

func TestUpgradesPassThroughUnfaulted(t *testing.T) {
	up := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "echo" {
			http.Error(w, "want upgrade", 400)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		line, _ := brw.ReadString('\n')
		brw.WriteString("echo " + line)
		brw.Flush()
	})
	front, _ := newProxy(t, up, "*=500")
	u, _ := url.Parse(front.URL)
	req, _ := http.NewRequest("GET", front.URL+"/api/v1/namespaces/h/pods/p/exec", nil)
	req.Header.Set("Upgrade", "echo")
	req.Header.Set("Connection", "Upgrade")
	conn, err := (&httptestDialer{}).dial(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := req.Write(conn); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, req)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	io.WriteString(conn, "hello\n")
	line, _ := br.ReadString('\n')
	if line != "echo hello\n" {
		t.Fatalf("stream: %q", line)
	}
}

type httptestDialer struct{}

func (httptestDialer) dial(addr string) (net.Conn, error) { return net.Dial("tcp", addr) }
