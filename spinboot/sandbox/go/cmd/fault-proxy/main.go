// Command fault-proxy is a reverse proxy that fails a chosen fraction of the HTTP calls passing through it, for the
// sandbox's Kubernetes API servers and its Cloud Storage stand-in: 429/500/503 with the body the real server
// would send, connection resets, and "after" faults where the call takes effect upstream and only its response
// is lost. Protocol upgrades (kubectl exec over WebSocket/SPDY) and watches stream through untouched. It counts
// every call by verb and resource, like the gRPC stand-ins count methods, behind the same admin endpoints
// (/counts, /faults, /healthz). It binds 127.0.0.1 only. With --iam-gate storage it also enforces Cloud Storage
// IAM for calls made with a sandbox identity token (iamgate.go).
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"spinboot.dev/sandbox/internal/sandboxsrv"
)

type proxy struct {
	rp       *httputil.ReverseProxy
	rules    *ruleSet
	counts   *counters
	style    string
	upstream *url.URL
	gate     *storageGate // nil: no IAM enforcement
}

func main() {
	name := flag.String("name", "fault-proxy", "name in logs and the ready file")
	upstream := flag.String("upstream", "", "URL of the server behind the proxy (http or https)")
	upstreamCA := flag.String("upstream-ca", "", "PEM CA bundle to verify an https upstream")
	tlsCert := flag.String("tls-cert", "", "serve TLS with this certificate (PEM); plain HTTP without")
	tlsKey := flag.String("tls-key", "", "key of --tls-cert")
	style := flag.String("error-style", "kubernetes", "body of injected errors: kubernetes (a Status) or google (JSON error)")
	iamGate := flag.String("iam-gate", "", "enforce IAM for identity-token calls: storage (the upstream is the Cloud Storage JSON API; "+
		"needs $"+sandboxsrv.SecretEnv+" and $"+sandboxsrv.RolesEnv+")")
	var o sandboxsrv.Options
	o.RegisterFlags() // --port, --admin-port, --ready-file, --faults (MATCH=CODE[:count=N][:rate=F][:delay=D][:after][:msg=T]), --exit-with-parent
	flag.Parse()
	log.SetPrefix(*name + ": ")

	up, err := url.Parse(*upstream)
	if err != nil || up.Host == "" {
		log.Fatalf("--upstream %q: want http(s)://host:port", *upstream)
	}
	if *style != "kubernetes" && *style != "google" {
		log.Fatalf("--error-style must be kubernetes or google")
	}
	p := &proxy{rules: &ruleSet{}, counts: newCounters(), style: *style, upstream: up}
	for _, spec := range o.FaultSpecs() {
		rules, err := parseRules(spec)
		if err != nil {
			log.Fatal(err)
		}
		p.rules.add(rules)
	}
	tr := &http.Transport{
		Proxy:               nil,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
		// HTTP/1.1 upstream: upgrades (exec) need it, and the API server speaks it as well as h2.
		TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{},
	}
	if *upstreamCA != "" {
		pem, err := os.ReadFile(*upstreamCA)
		if err != nil {
			log.Fatal(err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			log.Fatalf("no certificate in %s", *upstreamCA)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	switch *iamGate {
	case "":
	case "storage":
		g, err := sandboxsrv.GateFromEnv()
		if err != nil {
			log.Fatal(err)
		}
		p.gate = &storageGate{gate: g, upstream: up, client: &http.Client{Transport: tr}}
	default:
		log.Fatalf("--iam-gate must be storage (or empty)")
	}
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(up)
			pr.Out.Host = up.Host
			if *style == "google" {
				// The Storage emulator builds mediaLink and resumable-session URLs from Host: with the client's
				// Host they lead back through this proxy (and its IAM gate), as real ones lead to Google.
				pr.Out.Host = pr.In.Host
			}
		},
		Transport:     tr,
		FlushInterval: -1, // watches and logs stream
		ErrorLog:      log.New(os.Stderr, *name+": upstream: ", 0),
	}

	lis, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", o.Port))
	if err != nil {
		log.Fatal(err)
	}
	alis, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", o.AdminPort))
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: p, ReadHeaderTimeout: 30 * time.Second,
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){}} // HTTP/1.1 only, like upstream
	admin := &http.Server{Handler: p.adminMux(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = admin.Serve(alis) }()
	scheme := "http"
	errc := make(chan error, 1)
	if *tlsCert != "" {
		scheme = "https"
		go func() { errc <- srv.ServeTLS(lis, *tlsCert, *tlsKey) }()
	} else {
		go func() { errc <- srv.Serve(lis) }()
	}
	remove, err := sandboxsrv.Announce(o.ReadyFile, map[string]any{"name": *name,
		"url": scheme + "://" + lis.Addr().String(), "admin": "http://" + alis.Addr().String(), "pid": os.Getpid()})
	if err != nil {
		log.Fatal(err)
	}
	defer remove()
	log.Printf("proxying %s://%s -> %s, admin on %s", scheme, lis.Addr(), up, alis.Addr())

	why, err := sandboxsrv.WaitForStop(o.ExitWithParent, errc)
	if err != nil {
		remove()
		log.Fatal(err)
	}
	log.Printf("%s, stopping", why)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = srv.Shutdown(ctx)
	_ = admin.Shutdown(ctx)
}

// isWatch: ?watch=true (any form the API server's bool parsing takes: "True" from the Python client) or a
// legacy /api/v1/watch/... path.
func isWatch(r *http.Request) bool {
	w, _ := strconv.ParseBool(r.URL.Query().Get("watch"))
	return w || strings.Contains(r.URL.Path, "/watch/")
}

func isUpgrade(r *http.Request) bool {
	return r.Header.Get("Upgrade") != "" || strings.Contains(strings.ToLower(r.Header.Get("Connection")), "upgrade")
}

func (p *proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	key, kind := classify(r, p.style)
	p.counts.begin(key, kind)
	var f *rule
	if !isUpgrade(r) { // an exec stream is never failed: the fault would say nothing about spinboot's retries
		f = p.rules.pick(r.Method, r.URL.Path)
	}
	if f != nil && f.Delay > 0 {
		select {
		case <-time.After(f.Delay):
		case <-r.Context().Done():
		}
	}
	// IAM is decided where the call reaches the service: after a fault that fails it on the way in, before one
	// that loses its answer on the way out.
	if p.gate != nil && (f == nil || f.Code == "OK" || f.After) {
		if ok, status := p.gate.check(w, r); !ok {
			p.counts.end(key, false, status, false)
			return
		}
	}
	if f == nil || f.Code == "OK" {
		// Counted as the status goes out, so a client that reads /counts after its response sees its call.
		rec := &recorder{ResponseWriter: w, done: func(status int) { p.counts.end(key, f != nil, status, false) }}
		p.rp.ServeHTTP(rec, r)
		rec.record(http.StatusOK)
		return
	}
	// A watch never ends, so "after" would wait forever: a watch is failed before it starts instead.
	if f.After && !isWatch(r) {
		p.rp.ServeHTTP(&discard{header: http.Header{}}, r)
	}
	if f.Code == "RESET" {
		p.counts.end(key, true, 0, true)
		reset(w)
		return
	}
	p.counts.end(key, true, f.status, false)
	p.fail(w, r, f)
}

// reset closes the client's connection with a TCP RST (SO_LINGER 0), as a dropped load balancer would.
func reset(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler) // cannot hijack: abort the response, which also drops the connection
	}
	raw := conn
	if tc, ok := conn.(*tls.Conn); ok {
		raw = tc.NetConn()
	}
	if tcp, ok := raw.(*net.TCPConn); ok {
		_ = tcp.SetLinger(0)
	}
	_ = raw.Close()
}

var kubeReasons = map[int]string{400: "BadRequest", 403: "Forbidden", 404: "NotFound", 409: "Conflict",
	429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable", 504: "Timeout"}

// kubeReason is the Status reason the API server gives with that code (StatusReasonUnknown, "", for the rest).
func kubeReason(code int) string {
	if r, ok := kubeReasons[code]; ok {
		return r
	}
	if code >= 500 {
		return "InternalError"
	}
	return ""
}

var googleStatus = map[int]string{400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
	409: "ALREADY_EXISTS", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 502: "UNAVAILABLE", 503: "UNAVAILABLE",
	504: "DEADLINE_EXCEEDED"}

// fail answers with the error body the real server sends for that status.
func (p *proxy) fail(w http.ResponseWriter, r *http.Request, f *rule) {
	msg := f.Msg
	if msg == "" {
		msg = fmt.Sprintf("sandbox fault injection: %d on %s %s", f.status, r.Method, r.URL.Path)
	}
	var body any
	if p.style == "kubernetes" {
		st := map[string]any{"kind": "Status", "apiVersion": "v1", "metadata": map[string]any{},
			"status": "Failure", "message": msg, "reason": kubeReason(f.status), "code": f.status}
		if f.status == 429 || f.status == 503 {
			st["details"] = map[string]any{"retryAfterSeconds": 1}
		}
		body = st
	} else {
		st, reason := googleStatus[f.status], "backendError"
		if st == "" {
			st = "UNKNOWN"
		}
		if f.status == 429 {
			reason = "rateLimitExceeded"
		}
		body = map[string]any{"error": map[string]any{"code": f.status, "message": msg, "status": st,
			"errors": []any{map[string]any{"message": msg, "domain": "global", "reason": reason}}}}
	}
	w.Header().Set("Content-Type", "application/json")
	if f.status == 429 || f.status == 503 {
		w.Header().Set("Retry-After", "1")
	}
	w.WriteHeader(f.status)
	_ = json.NewEncoder(w).Encode(body)
}

// recorder reports the response's status once, when it is sent; Unwrap lets the reverse proxy reach the
// connection for upgrades and flushes.
type recorder struct {
	http.ResponseWriter
	done     func(status int)
	recorded bool
}

func (r *recorder) record(status int) {
	if !r.recorded {
		r.recorded = true
		r.done(status)
	}
}

func (r *recorder) WriteHeader(code int) {
	if code >= 200 || code == http.StatusSwitchingProtocols {
		r.record(code)
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	r.record(http.StatusOK)
	return r.ResponseWriter.Write(b)
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// discard receives the upstream's answer to an "after" fault's request; the client never sees it.
type discard struct{ header http.Header }

func (d *discard) Header() http.Header         { return d.header }
func (d *discard) Write(b []byte) (int, error) { return len(b), nil }
func (d *discard) WriteHeader(int)             {}
func (d *discard) Flush()                      {}

func (p *proxy) adminMux() *http.ServeMux {
	mux := http.NewServeMux()
	sandboxsrv.AdminRoutes(mux, sandboxsrv.Admin{
		Counts:      func() any { return p.counts.snapshot() },
		ResetCounts: p.counts.reset,
		ListFaults:  func() any { return p.rules.list() },
		ClearFaults: p.rules.clear,
		SetFaults: func(spec string, replace bool) error {
			rules, err := parseRules(spec)
			if err != nil {
				return err
			}
			if replace {
				p.rules.clear()
			}
			p.rules.add(rules)
			return nil
		},
	})
	return mux
}
