package sandboxsrv

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// What every sandbox server process shares, whatever it serves (the gRPC stand-ins, cmd/fault-proxy): the admin
// endpoint, the ready announcement and the stop conditions.

// Admin is what the admin endpoint exposes of a server's counters and fault rules.
type Admin struct {
	Counts      func() any                            // GET /counts
	ResetCounts func()                                // DELETE /counts
	ListFaults  func() any                            // GET /faults, and the answer to every /faults call
	ClearFaults func()                                // DELETE /faults
	SetFaults   func(spec string, replace bool) error // POST (append) and PUT (replace); nothing changes on error
}

// AdminRoutes registers /healthz, /counts (GET, DELETE) and /faults (GET, POST appends, PUT replaces, DELETE
// clears; the body is the --faults spec text) on mux.
func AdminRoutes(mux *http.ServeMux, a Admin) {
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("/counts", func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet:
		case http.MethodDelete:
			a.ResetCounts()
		default:
			http.Error(w, "GET or DELETE", http.StatusMethodNotAllowed)
			return
		}
		writeJSON(w, a.Counts())
	})
	mux.HandleFunc("/faults", func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet:
		case http.MethodDelete:
			a.ClearFaults()
		case http.MethodPost, http.MethodPut:
			body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
			if err := a.SetFaults(string(body), r.Method == http.MethodPut); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
		default:
			http.Error(w, "GET, POST, PUT or DELETE", http.StatusMethodNotAllowed)
			return
		}
		writeJSON(w, map[string]any{"faults": a.ListFaults()})
	})
}

// Announce tells the launcher the server is up: info as one JSON line on stdout and, if readyFile is set, the same
// line written there atomically (write + rename). The returned func removes the ready file again.
func Announce(readyFile string, info map[string]any) (remove func(), err error) {
	line, err := json.Marshal(info)
	if err != nil {
		return nil, err
	}
	fmt.Println(string(line))
	if readyFile == "" {
		return func() {}, nil
	}
	tmp := readyFile + ".tmp"
	if err := os.WriteFile(tmp, append(line, '\n'), 0o644); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, readyFile); err != nil {
		return nil, err
	}
	return func() { _ = os.Remove(readyFile) }, nil
}

// WaitForStop blocks until SIGTERM or SIGINT arrives, the launching process dies (when exitWithParent: a crashed
// test run then leaves nothing behind), or errc yields (the server failed). It returns why, or the server's error.
func WaitForStop(exitWithParent bool, errc <-chan error) (string, error) {
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigc)
	parentGone := make(chan struct{})
	if exitWithParent {
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
		return sig.String(), nil
	case <-parentGone:
		return "parent process gone", nil
	case err := <-errc:
		return "", err
	}
}
