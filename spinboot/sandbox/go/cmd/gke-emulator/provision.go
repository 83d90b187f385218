package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// provisioned is what the provisioning command reports for a sandbox Kubernetes cluster.
type provisioned struct {
	endpoint   string // host:port, as GKE's Cluster.endpoint (GKE gives a bare IP; clients use https://ENDPOINT)
	caPEM      string
	kubeconfig string
	// apiServer is the control plane's own URL (optional "api_server"), which the metadata server reads service
	// accounts from: not through the fault proxy, whose faults are meant for spinboot's calls.
	apiServer string
}

// provisioner runs the external commands that start and stop a real sandbox control plane per GKE cluster.
// The emulator itself knows nothing about Kubernetes: `<cmd> --name <project>-<location>-<cluster>`.
type provisioner struct {
	provisionCmd, deprovisionCmd, nodesCmd string
	timeout                                time.Duration
}

// run executes `sh -c 'CMD "$@"' sh --name NAME [more args]`: arguments are passed as arguments, never spliced
// into the shell text. Stdout goes to a file, not a pipe, so a detached grandchild holding it open cannot hang us.
func (p *provisioner) run(ctx context.Context, cmdline, name string, more ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	out, err := os.CreateTemp("", "gke-emulator-provision-*.out")
	if err != nil {
		return nil, err
	}
	defer os.Remove(out.Name())
	defer out.Close()
	cmd := exec.CommandContext(ctx, "/bin/sh", append([]string{"-c", cmdline + ` "$@"`, "sh", "--name", name}, more...)...)
	cmd.Stdout = out
	cmd.Stderr = os.Stderr // our log file
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	log.Printf("running: %s --name %s %s", cmdline, name, strings.Join(more, " "))
	start := time.Now()
	err = cmd.Run()
	data, _ := os.ReadFile(out.Name())
	log.Printf("finished in %s: %s --name %s %s (err=%v)", time.Since(start).Round(time.Millisecond), cmdline, name, strings.Join(more, " "), err)
	if err != nil {
		if ctx.Err() == context.DeadlineExceeded {
			return data, status.Errorf(codes.DeadlineExceeded, "sandbox provisioning of %s timed out after %s", name, p.timeout)
		}
		return data, status.Errorf(codes.Internal, "sandbox provisioning command for %s failed: %v (see the gke-emulator log)", name, err)
	}
	return data, nil
}

func (p *provisioner) provision(ctx context.Context, name string) (*provisioned, error) {
	if p.provisionCmd == "" {
		log.Printf("no --provision-cmd: cluster %s gets no endpoint", name)
		return &provisioned{}, nil
	}
	data, err := p.run(ctx, p.provisionCmd, name)
	if err != nil {
		return &provisioned{}, err
	}
	// The contract is one JSON line; take the last non-empty line so chatty tools still work.
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	var v struct {
		Endpoint        string `json:"endpoint"`
		CAPEM           string `json:"ca_pem"`
		AdminKubeconfig string `json:"admin_kubeconfig"`
		APIServer       string `json:"api_server"`
	}
	if err := json.Unmarshal(bytes.TrimSpace([]byte(lines[len(lines)-1])), &v); err != nil || v.Endpoint == "" || !strings.Contains(v.CAPEM, "BEGIN CERTIFICATE") {
		return &provisioned{}, status.Errorf(codes.Internal, "sandbox provisioning of %s printed %q: want one JSON line {endpoint, ca_pem, admin_kubeconfig} (%v)", name, lines[len(lines)-1], err)
	}
	return &provisioned{endpoint: strings.TrimPrefix(v.Endpoint, "https://"), caPEM: v.CAPEM, kubeconfig: v.AdminKubeconfig,
		apiServer: v.APIServer}, nil
}

func (p *provisioner) deprovision(ctx context.Context, name string) error {
	if p.deprovisionCmd == "" {
		return nil
	}
	_, err := p.run(ctx, p.deprovisionCmd, name)
	if err != nil {
		return fmt.Errorf("deprovision %s: %w", name, err)
	}
	return nil
}

// nodes makes the backing cluster have count nodes for pool (total over the pool's zones, as `kubectl get
// nodes` shows on GKE): `<nodes-cmd> --name NAME --pool POOL --count N`. Without --nodes-cmd it is a no-op.
func (p *provisioner) nodes(ctx context.Context, name, pool string, count int) error {
	if p.nodesCmd == "" {
		return nil
	}
	if _, err := p.run(ctx, p.nodesCmd, name, "--pool", pool, "--count", fmt.Sprint(count)); err != nil {
		return fmt.Errorf("resize node pool %s of %s: %w", pool, name, err)
	}
	return nil
}
