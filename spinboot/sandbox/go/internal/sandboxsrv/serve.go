package sandboxsrv

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/reflection"
)

// Options are the flags every sandbox server shares.
type Options struct {
	Port           int
	AdminPort      int
	ReadyFile      string
	Faults         multiFlag
	ExitWithParent bool
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ";") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// RegisterFlags adds the shared flags to the default flag set.
func (o *Options) RegisterFlags() {
	flag.IntVar(&o.Port, "port", 0, "serving port on 127.0.0.1 (0 = pick a free one and print it)")
	flag.IntVar(&o.AdminPort, "admin-port", 0, "admin HTTP port on 127.0.0.1 (0 = pick a free one)")
	flag.StringVar(&o.ReadyFile, "ready-file", "", "write {name, grpc or url, admin, pid} JSON here (atomically) once serving")
	flag.Var(&o.Faults, "faults", "fault rules: METHOD=CODE[:count=N][:rate=F][:delay=D][:after][:msg=T] for gRPC servers, MATCH=CODE[...] for fault-proxy (repeatable; also $"+FaultsEnv+")")
	flag.BoolVar(&o.ExitWithParent, "exit-with-parent", true, "exit when the launching process dies, so a crashed test run leaves nothing behind")
}

// FaultSpecs are the initial fault specs: $SPINBOOT_SANDBOX_FAULTS, then every --faults flag.
func (o *Options) FaultSpecs() []string {
	return append([]string{os.Getenv(FaultsEnv)}, o.Faults...)
}

// Server bundles the gRPC server with its fault rules and counters.
type Server struct {
	Name     string
	GRPC     *grpc.Server
	Faults   *Faults
	Counters *Counters
	Admin    *http.ServeMux
	// AdminEnv, if set, names an environment variable set to the admin URL once it listens, so the commands this
	// server runs (the GKE stand-in's provisioning hooks) can reach its admin endpoint.
	AdminEnv string
	opts     *Options
}

// New builds the gRPC server with counting/fault interceptors, loading initial faults from flags and env. extra
// options come after them: interceptors passed there (Gate.Interceptors) run inside the counting and fault ones.
func New(name string, o *Options, after AfterHook, extra ...grpc.ServerOption) (*Server, error) {
	fs := &Faults{}
	for _, spec := range o.FaultSpecs() {
		rules, err := ParseFaults(spec)
		if err != nil {
			return nil, err
		}
		fs.Add(rules)
	}
	cs := NewCounters()
	s := &Server{Name: name, Faults: fs, Counters: cs, Admin: http.NewServeMux(), opts: o}
	s.GRPC = grpc.NewServer(append(Interceptors(fs, cs, after), extra...)...)
	reflection.Register(s.GRPC) // lets grpcurl and humans explore the sandbox
	s.routes()
	return s, nil
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func (s *Server) routes() {
	AdminRoutes(s.Admin, Admin{
		Counts:      func() any { return s.Counters.Snapshot() },
		ResetCounts: s.Counters.Reset,
		ListFaults:  func() any { return s.Faults.List() },
		ClearFaults: s.Faults.Clear,
		SetFaults: func(spec string, replace bool) error {
			rules, err := ParseFaults(spec)
			if err != nil {
				return err
			}
			if replace {
				s.Faults.Clear()
			}
			s.Faults.Add(rules)
			return nil
		},
	})
}

// Serve listens on loopback only, announces readiness (stdout line + ready file) and blocks until SIGTERM/SIGINT
// or the parent's death, then stops gracefully (bounded) and runs cleanup.
func (s *Server) Serve(cleanup func()) error {
	lis, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", s.opts.Port))
	if err != nil {
		return err
	}
	alis, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", s.opts.AdminPort))
	if err != nil {
		return err
	}
	if s.AdminEnv != "" {
		_ = os.Setenv(s.AdminEnv, "http://"+alis.Addr().String())
	}
	admin := &http.Server{Handler: s.Admin, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = admin.Serve(alis) }()
	errc := make(chan error, 1)
	go func() { errc <- s.GRPC.Serve(trackingListener{lis}) }()

	remove, err := Announce(s.opts.ReadyFile, map[string]any{
		"name":  s.Name,
		"grpc":  lis.Addr().String(),
		"admin": "http://" + alis.Addr().String(),
		"pid":   os.Getpid(),
	})
	if err != nil {
		return err
	}
	defer remove()
	log.Printf("%s serving gRPC on %s, admin on %s", s.Name, lis.Addr(), alis.Addr())

	why, err := WaitForStop(s.opts.ExitWithParent, errc)
	if err != nil {
		return err
	}
	log.Printf("%s: %s, stopping", s.Name, why)
	done := make(chan struct{})
	go func() { s.GRPC.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * time.Second): // a StreamingPull never ends by itself
		s.GRPC.Stop()
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = admin.Shutdown(ctx)
	if cleanup != nil {
		cleanup()
	}
	return nil
}

// Abs makes a path absolute so child commands run from any directory see the same file.
func Abs(p string) string {
	if p == "" {
		return p
	}
	a, err := filepath.Abs(p)
	if err != nil {
		return p
	}
	return a
}
