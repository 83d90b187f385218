// Package sandboxsrv holds what every sandbox stand-in for a Google API shares: fault injection, per-method
// call counters, the loopback admin HTTP endpoint, startup/readiness plumbing, and an IAM policy store with the
// real etag read-modify-write semantics.
package sandboxsrv

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// FaultsEnv is read at startup in addition to --faults, so a test harness can inject faults without flags.
const FaultsEnv = "SPINBOOT_SANDBOX_FAULTS"

// Fault is one injection rule. Spec grammar (rules separated by ';' or newlines):
//
//	METHOD=CODE[:count=N][:rate=F][:delay=DURATION][:after][:msg=TEXT]
//
// METHOD is "*", a full method ("google.container.v1.ClusterManager/CreateCluster"), the same without a
// leading package prefix ("container.v1.ClusterManager/CreateCluster", "ClusterManager/CreateCluster"),
// "Service/*", or a bare method name ("CreateCluster"). CODE is a gRPC code name (UNAVAILABLE,
// RESOURCE_EXHAUSTED, ...), RESET (the client's TCP connection is reset, as by a dropped load balancer; the client
// sees UNAVAILABLE) or OK (with delay=, to inject latency only). Without count or rate the rule fires
// on every matching call; count=N fires on the next N matching calls and then retires. ":after" (unary calls
// only) runs the call first, so its effect happens, and then fails it: the client never learns it succeeded.
type Fault struct {
	Method    string        `json:"method"`
	Code      string        `json:"code"`
	Count     int           `json:"count,omitempty"` // remaining firings; 0 with Unlimited=false means retired
	Unlimited bool          `json:"unlimited"`
	Rate      float64       `json:"rate,omitempty"`
	Delay     time.Duration `json:"delay_ns,omitempty"`
	Msg       string        `json:"msg,omitempty"`
	After     bool          `json:"after,omitempty"`
	Fired     int           `json:"fired"`
	code      codes.Code
	reset     bool
}

var codeByName = func() map[string]codes.Code {
	m := map[string]codes.Code{}
	for c := codes.OK; c <= codes.Unauthenticated; c++ {
		// codes.Code.String() gives "Unavailable"; the spec uses the proto enum spelling.
		m[strings.ToUpper(camelToSnake(c.String()))] = c
	}
	m["CANCELLED"] = codes.Canceled // the proto enum's spelling
	return m
}()

func camelToSnake(s string) string {
	var b strings.Builder
	for i, r := range s {
		if i > 0 && r >= 'A' && r <= 'Z' && s[i-1] >= 'a' && s[i-1] <= 'z' {
			b.WriteByte('_')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// ParseFaults parses a spec (see Fault). An empty spec yields no rules.
func ParseFaults(spec string) ([]*Fault, error) {
	var out []*Fault
	for _, raw := range strings.FieldsFunc(spec, func(r rune) bool { return r == ';' || r == '\n' }) {
		raw = strings.TrimSpace(raw)
		if raw == "" {
			continue
		}
		method, rest, ok := strings.Cut(raw, "=")
		if !ok || strings.TrimSpace(method) == "" {
			return nil, fmt.Errorf("fault %q: want METHOD=CODE[:count=N][:rate=F][:delay=D][:msg=TEXT]", raw)
		}
		parts := strings.Split(rest, ":")
		f := &Fault{Method: strings.TrimPrefix(strings.TrimSpace(method), "/"), Code: strings.ToUpper(strings.TrimSpace(parts[0])), Unlimited: true}
		c, ok := codeByName[f.Code]
		if f.Code == "RESET" {
			c, ok, f.reset = codes.Unavailable, true, true
		}
		if !ok {
			return nil, fmt.Errorf("fault %q: unknown gRPC code %q", raw, parts[0])
		}
		f.code = c
		for _, opt := range parts[1:] {
			k, v, _ := strings.Cut(opt, "=")
			var err error
			switch strings.TrimSpace(k) {
			case "count":
				f.Count, err = strconv.Atoi(v)
				f.Unlimited = false
				if err == nil && f.Count < 1 {
					err = fmt.Errorf("must be >= 1")
				}
			case "rate":
				f.Rate, err = strconv.ParseFloat(v, 64)
				if err == nil && (f.Rate <= 0 || f.Rate > 1) {
					err = fmt.Errorf("must be in (0, 1]")
				}
			case "delay":
				f.Delay, err = time.ParseDuration(v)
			case "msg":
				f.Msg = v
			case "after":
				f.After = true
			default:
				err = fmt.Errorf("unknown option")
			}
			if err != nil {
				return nil, fmt.Errorf("fault %q: option %q: %v", raw, opt, err)
			}
		}
		out = append(out, f)
	}
	return out, nil
}

// matches reports whether the rule applies to fullMethod ("/pkg.Service/Method").
func (f *Fault) matches(fullMethod string) bool {
	fm := strings.TrimPrefix(fullMethod, "/")
	svc, meth, _ := strings.Cut(fm, "/")
	p := f.Method
	switch {
	case p == "*":
		return true
	case !strings.Contains(p, "/"):
		return p == meth
	case strings.HasSuffix(p, "/*"):
		ps := strings.TrimSuffix(p, "/*")
		return svc == ps || strings.HasSuffix(svc, "."+ps)
	default:
		return fm == p || strings.HasSuffix(fm, "."+p)
	}
}

// Faults is the live rule set, changed at runtime through the admin endpoint.
type Faults struct {
	mu    sync.Mutex
	rules []*Fault
}

func (fs *Faults) Add(rules []*Fault) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.rules = append(fs.rules, rules...)
}

func (fs *Faults) Clear() {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.rules = nil
}

func (fs *Faults) List() []Fault {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	out := make([]Fault, 0, len(fs.rules))
	for _, r := range fs.rules {
		out = append(out, *r)
	}
	return out
}

// pick returns the first matching live rule (consuming one count) or nil. Rules are evaluated in order,
// so a specific rule placed before "*" wins.
func (fs *Faults) pick(fullMethod string) *Fault {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	for _, r := range fs.rules {
		if (!r.Unlimited && r.Count <= 0) || !r.matches(fullMethod) {
			continue
		}
		if r.Rate > 0 && rand.Float64() >= r.Rate {
			continue
		}
		if !r.Unlimited {
			r.Count--
		}
		r.Fired++
		cp := *r
		return &cp
	}
	return nil
}

// apply sleeps for an injected delay and returns the injected error, if any rule fires.
func (fs *Faults) apply(ctx context.Context, fullMethod string) (injected bool, err error) {
	f := fs.pick(fullMethod)
	if f == nil {
		return false, nil
	}
	return true, f.fail(ctx, fullMethod)
}

// fail waits out the rule's delay and returns its error (nil for OK), resetting the connection for RESET.
func (f *Fault) fail(ctx context.Context, fullMethod string) error {
	if f.Delay > 0 {
		select {
		case <-time.After(f.Delay):
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		}
	}
	if f.code == codes.OK {
		return nil
	}
	if f.reset {
		if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
			resetConn(p.Addr.String())
		}
		return status.Error(codes.Unavailable, "sandbox fault injection: connection reset")
	}
	msg := f.Msg
	if msg == "" {
		msg = fmt.Sprintf("sandbox fault injection: %s on %s", f.Code, fullMethod)
	}
	return status.Error(f.code, msg)
}

// AfterHook runs after a unary handler returned; servers use it to keep side state (IAM policies of a deleted
// resource) consistent with the wrapped upstream implementation they cannot modify.
type AfterHook func(fullMethod string, req any, err error)

// Interceptors returns the server options that count every call and inject faults before the handler runs.
// Injected failures are counted too: a client that retries shows up as several calls, as at the real API.
func Interceptors(fs *Faults, cs *Counters, after AfterHook) []grpc.ServerOption {
	unary := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		cs.begin(info.FullMethod)
		f := fs.pick(info.FullMethod)
		if f != nil && !f.After {
			if err := f.fail(ctx, info.FullMethod); err != nil {
				cs.end(info.FullMethod, true, err)
				return nil, err
			}
		}
		resp, err := h(ctx, req)
		if after != nil {
			after(info.FullMethod, req, err)
		}
		if f != nil && f.After && err == nil {
			// The call took effect; its answer is lost on the way back.
			if ferr := f.fail(ctx, info.FullMethod); ferr != nil {
				resp, err = nil, ferr
			}
		}
		cs.end(info.FullMethod, f != nil, err)
		return resp, err
	}
	stream := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		cs.begin(info.FullMethod)
		injected, err := fs.apply(ss.Context(), info.FullMethod)
		if err != nil {
			cs.end(info.FullMethod, injected, err)
			return err
		}
		err = h(srv, ss)
		cs.end(info.FullMethod, injected, err)
		return err
	}
	return []grpc.ServerOption{grpc.ChainUnaryInterceptor(unary), grpc.ChainStreamInterceptor(stream)}
}

// conns maps each client connection's remote address to the connection, so a RESET fault can reset the very
// connection a call arrived on (gRPC gives the interceptor only the peer's address).
var conns sync.Map

type trackingListener struct{ net.Listener }

func (l trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	conns.Store(c.RemoteAddr().String(), c)
	return trackedConn{c}, nil
}

// trackedConn forgets its registry entry when closed (only its own: a later connection may reuse the address).
type trackedConn struct{ net.Conn }

func (c trackedConn) Close() error {
	conns.CompareAndDelete(c.RemoteAddr().String(), c.Conn)
	return c.Conn.Close()
}

func resetConn(remote string) {
	v, ok := conns.LoadAndDelete(remote)
	if !ok {
		return
	}
	c := v.(net.Conn)
	if tcp, ok := c.(*net.TCPConn); ok {
		_ = tcp.SetLinger(0) // close with RST, not FIN
	}
	_ = c.Close()
}
