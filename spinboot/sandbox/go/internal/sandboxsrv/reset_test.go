package sandboxsrv

import (
	"context"
	"errors"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// errConn remembers every error the client's side of the connection met. After an RST the kernel reports
// ECONNRESET once, to whichever read or write comes first; later ones see EOF or EPIPE.
type errConn struct {
	net.Conn
	mu   *sync.Mutex
	errs *[]error
}

func (c errConn) note(err error) {
	if err != nil {
		c.mu.Lock()
		*c.errs = append(*c.errs, err)
		c.mu.Unlock()
	}
}

func (c errConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.note(err)
	return n, err
}

func (c errConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.note(err)
	return n, err
}

// A RESET fault resets the TCP connection the call came on: the client meets ECONNRESET (not a clean close) and
// the call fails UNAVAILABLE; the next call reconnects and succeeds.
func TestResetFaultResetsTheClientConnection(t *testing.T) {
	rules, err := ParseFaults("Health/Check=RESET:count=1")
	if err != nil {
		t.Fatal(err)
	}
	fs, cs := &Faults{}, NewCounters()
	fs.Add(rules)
	srv := grpc.NewServer(Interceptors(fs, cs, nil)...)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(trackingListener{lis}) }()
	t.Cleanup(srv.Stop)

	var mu sync.Mutex
	var errs []error
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
			if err != nil {
				return nil, err
			}
			return errConn{Conn: c, mu: &mu, errs: &errs}, nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	client := healthpb.NewHealthClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	_, err = client.Check(ctx, &healthpb.HealthCheckRequest{})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("want UNAVAILABLE, got %v", err)
	}
	reset := func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, e := range errs {
			if errors.Is(e, syscall.ECONNRESET) {
				return true
			}
		}
		return false
	}
	for deadline := time.Now().Add(5 * time.Second); !reset(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			mu.Lock()
			defer mu.Unlock()
			t.Fatalf("the client's connection was not reset; its errors: %v", errs)
		}
	}
	if _, err := client.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true)); err != nil {
		t.Fatalf("after the reset: %v", err)
	}
	// The reset reaches the client before the interceptor records the call's end: allow it a moment.
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		c := cs.Snapshot()["methods"].(map[string]MethodCount)["/grpc.health.v1.Health/Check"]
		if c.Calls == 2 && c.Injected == 1 && c.Codes["UNAVAILABLE"] == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("counts: %+v", c)
		}
	}
}
