package sandboxsrv

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
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
	flag.IntVar(&o.Port, "port", 0, "gRPC port on 127.0.0.1 (0 = pick a free one and print it)")
	flag.IntVar(&o.AdminPort, "admin-port", 0, "admin HTTP port on 127.0.0.1 (0 = pick a free one)")
	flag.StringVar(&o.ReadyFile, "ready-file", "", "write {grpc, admin, pid} JSON here (atomically) once serving")
	flag.Var(&o.Faults, "faults", "fault rules METHOD=CODE[:count=N][:rate=F][:delay=D][:msg=T] (repeatable; also $"+FaultsEnv+")")
	flag.BoolVar(&o.ExitWithParent, "exit-with-parent", true, "exit when the launching process dies, so a crashed test run leaves nothing behind")
}

// Server bundles the gRPC server with its fault rules and counters.
type Server struct {
	Name     string
	GRPC     *grpc.Server
	Faults   *Faults
	Counters *Counters
	Admin    *http.ServeMux
	opts     *Options
}

// New builds the gRPC server with counting/fault interceptors, loading initial faults from flags and env.
func New(name string, o *Options, after AfterHook) (*Server, error) {
	fs := &Faults{}
	for _, spec := range append([]string{os.Getenv(FaultsEnv)}, o.Faults...) {
		rules, err := ParseFaults(spec)
		if err != nil {
			return nil, err
		}
		fs.Add(rules)
	}
	cs := NewCounters()
	s := &Server{Name: name, Faults: fs, Counters: cs, Admin: http.NewServeMux(), opts: o}
	s.GRPC = grpc.NewServer(Interceptors(fs, cs, after)...)
	reflection.Register(s.GRPC) // lets grpcurl and humans explore the sandbox
	s.routes()
	return s, nil
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func (s *Server) routes() {
	s.Admin.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	s.Admin.HandleFunc("/counts", func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet:
			writeJSON(w, s.Counters.Snapshot())
		case http.MethodDelete:
			s.Counters.Reset()
			writeJSON(w, s.Counters.Snapshot())
		default:
			http.Error(w, "GET or DELETE", http.StatusMethodNotAllowed)
		}
	})
	s.Admin.HandleFunc("/faults", func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet:
		case http.MethodDelete:
			s.Faults.Clear()
		case http.MethodPost, http.MethodPut: // POST appends, PUT replaces; body is the --faults spec text
			body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
			rules, err := ParseFaults(string(body))
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			if r.Method == http.MethodPut {
				s.Faults.Clear()
			}
			s.Faults.Add(rules)
		default:
			http.Error(w, "GET, POST, PUT or DELETE", http.StatusMethodNotAllowed)
			return
		}
		writeJSON(w, map[string]any{"faults": s.Faults.List()})
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
	admin := &http.Server{Handler: s.Admin, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = admin.Serve(alis) }()
	errc := make(chan error, 1)
	go func() { errc <- s.GRPC.Serve(trackingListener{lis}) }()

	ready := map[string]any{
		"name":  s.Name,
		"grpc":  lis.Addr().String(),
		"admin": "http://" + alis.Addr().String(),
		"pid":   os.Getpid(),
	}
	line, _ := json.Marshal(ready)
	fmt.Println(string(line))
	if s.opts.ReadyFile != "" {
		tmp := s.opts.ReadyFile + ".tmp"
		if err := os.WriteFile(tmp, append(line, '\n'), 0o644); err != nil {
			return err
		}
		if err := os.Rename(tmp, s.opts.ReadyFile); err != nil {
			return err
		}
		defer os.Remove(s.opts.ReadyFile)
	}
	log.Printf("%s serving gRPC on %s, admin on %s", s.Name, lis.Addr(), alis.Addr())

	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGTERM, syscall.SIGINT)
	parentGone := make(chan struct{})
	if s.opts.ExitWithParent {
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
	case sig := <-sigc:
		log.Printf("%s: %v, stopping", s.Name, sig)
	case <-parentGone:
		log.Printf("%s: parent process gone, stopping", s.Name)
	case err := <-errc:
		return err
	}
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
