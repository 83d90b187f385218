// Command fault-proxy is a reverse proxy that fails a chosen fraction of the HTTP calls passing through it, for the
// sandbox's Kubernetes API servers and its Cloud Storage stand-in: 429/500/503 with the body the real server
// would send, connection resets, and "after" faults where the call takes effect upstream and only its response
// is lost. Protocol upgrades (kubectl exec over WebSocket/SPDY) and watches stream through untouched. It counts
// every call by verb and resource, like the gRPC stand-ins count methods, behind the same admin endpoints
// (/counts, /faults, /healthz). It binds 127.0.0.1 only.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ";") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

type proxy struct {
	rp       *httputil.ReverseProxy
	rules    *ruleSet
	counts   *counters
	style    string
	upstream *url.URL
}

func main() {
	name := flag.String("name", "fault-proxy", "name in logs and the ready file")
	upstream := flag.String("upstream", "", "URL of the server behind the proxy (http or https)")
	upstreamCA := flag.String("upstream-ca", "", "PEM CA bundle to verify an https upstream")
	tlsCert := flag.String("tls-cert", "", "serve TLS with this certificate (PEM); plain HTTP without")
	tlsKey := flag.String("tls-key", "", "key of --tls-cert")
	port := flag.Int("port", 0, "port on 127.0.0.1 (0 = any free one)")
	adminPort := flag.Int("admin-port", 0, "admin HTTP port on 127.0.0.1 (0 = any free one)")
	readyFile := flag.String("ready-file", "", "write {name, url, admin, pid} JSON here (atomically) once serving")
	style := flag.String("error-style", "kubernetes", "body of injected errors: kubernetes (a Status) or google (JSON error)")
	exitWithParent := flag.Bool("exit-with-parent", true, "exit when the launching process dies")
	var faults multiFlag
	flag.Var(&faults, "faults", "fault rules MATCH=CODE[:count=N][:rate=F][:delay=D][:after][:msg=T] (repeatable; also $SPINBOOT_SANDBOX_FAULTS)")
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
	for _, spec := range append([]string{os.Getenv("SPINBOOT_SANDBOX_FAULTS")}, faults...) {
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
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(up)
			pr.Out.Host = up.Host
		},
		Transport:     tr,
		FlushInterval: -1, // watches and logs stream
		ErrorLog:      log.New(os.Stderr, *name+": upstream: ", 0),
	}

	lis, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", *port))
	if err != nil {
		log.Fatal(err)
	}
	alis, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", *adminPort))
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
	ready, _ := json.Marshal(map[string]any{"name": *name, "url": scheme + "://" + lis.Addr().String(),
		"admin": "http://" + alis.Addr().String(), "pid": os.Getpid()})
	fmt.Println(string(ready))
	if *readyFile != "" {
		if err := os.WriteFile(*readyFile+".tmp", append(ready, '\n'), 0o644); err != nil {
			log.Fatal(err)
		}
		if err := os.Rename(*readyFile+".tmp", *readyFile); err != nil {
			log.Fatal(err)
		}
		defer os.Remove(*readyFile)
	}
	log.Printf("proxying %s://%s -> %s, admin on %s", scheme, lis.Addr(), up, alis.Addr())

	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGTERM, syscall.SIGINT)
	parentGone := make(chan struct{})
	if *exitWithParent {
		ppid := os.Getppid()
		go func() {
			for range time.Tick(time.Second) {
				if os.Getppid() != ppid {
					close(parentGone)
					return
				}
			}
		}()
	}
	select {
	case <-sigc:
	case <-parentGone:
	case err := <-errc:
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = srv.Shutdown(ctx)
	_ = admin.Shutdown(ctx)
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
	if f == nil || f.Code == "OK" {
		rec := &recorder{ResponseWriter: w, status: http.StatusOK}
		p.rp.ServeHTTP(rec, r)
		p.counts.end(key, f != nil, rec.status, false)
		return
	}
	// A watch never ends, so "after" would wait forever: a watch is failed before it starts instead.
	if f.After && r.URL.Query().Get("watch") != "true" && r.URL.Query().Get("watch") != "1" {
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
			"status": "Failure", "message": msg, "reason": kubeReasons[f.status], "code": f.status}
		if f.status == 429 || f.status == 503 {
			st["details"] = map[string]any{"retryAfterSeconds": 1}
		}
		body = st
	} else {
		body = map[string]any{"error": map[string]any{"code": f.status, "message": msg,
			"status": googleStatus[f.status], "errors": []any{map[string]any{"message": msg, "reason": "backendError"}}}}
	}
	w.Header().Set("Content-Type", "application/json")
	if f.status == 429 || f.status == 503 {
		w.Header().Set("Retry-After", "1")
	}
	w.WriteHeader(f.status)
	_ = json.NewEncoder(w).Encode(body)
}

// recorder remembers the status for the counters; Unwrap lets the reverse proxy reach the connection for
// upgrades and flushes.
type recorder struct {
	http.ResponseWriter
	status int
}

func (r *recorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
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
	writeJSON := func(w http.ResponseWriter, v any) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(v)
	}
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("/counts", func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet:
		case http.MethodDelete:
			p.counts.reset()
		default:
			http.Error(w, "GET or DELETE", http.StatusMethodNotAllowed)
			return
		}
		writeJSON(w, p.counts.snapshot())
	})
	mux.HandleFunc("/faults", func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet:
		case http.MethodDelete:
			p.rules.clear()
		case http.MethodPost, http.MethodPut: // POST appends, PUT replaces
			body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
			rules, err := parseRules(string(body))
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			if r.Method == http.MethodPut {
				p.rules.clear()
			}
			p.rules.add(rules)
		default:
			http.Error(w, "GET, POST, PUT or DELETE", http.StatusMethodNotAllowed)
			return
		}
		writeJSON(w, map[string]any{"faults": p.rules.list()})
	})
	return mux
}
