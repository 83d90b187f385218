// Command gke-emulator serves google.container.v1.ClusterManager (clusters, node pools, long-running
// operations), google.iam.admin.v1.IAM (service accounts and their policies) and
// google.cloud.resourcemanager.v3.Projects (project IAM policies) on one loopback gRPC port. No Google emulator
// exists for these; each GKE cluster created here is backed by a real sandbox Kubernetes control plane started
// by --provision-cmd, so the endpoint and CA it returns really answer.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"log"
	"net/http"
	"os"
	"strings"
	"time"

	"cloud.google.com/go/container/apiv1/containerpb"
	"cloud.google.com/go/iam/admin/apiv1/adminpb"
	"cloud.google.com/go/resourcemanager/apiv3/resourcemanagerpb"

	"spinboot.dev/sandbox/internal/sandboxsrv"
)

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func main() {
	var o sandboxsrv.Options
	o.RegisterFlags()
	latency := flag.Duration("latency", mustDur(envOr("SPINBOOT_GKE_LATENCY", "2s")), "minimum time an operation stays PENDING/RUNNING (env SPINBOOT_GKE_LATENCY)")
	version := flag.String("version", envOr("SPINBOOT_GKE_VERSION", "1.36.3-gke.1000"), "GKE version reported for new clusters")
	provCmd := flag.String("provision-cmd", "", "command that starts a sandbox Kubernetes cluster; run with --name PROJECT-LOCATION-CLUSTER appended; prints one JSON line {endpoint, ca_pem, admin_kubeconfig}")
	deprovCmd := flag.String("deprovision-cmd", "", "command that stops it; run with --name PROJECT-LOCATION-CLUSTER appended")
	nodesCmd := flag.String("nodes-cmd", "", "command that sets a node pool's node count in the backing cluster; run with --name PROJECT-LOCATION-CLUSTER --pool POOL --count TOTAL appended")
	provTimeout := flag.Duration("provision-timeout", 10*time.Minute, "give up on a (de)provisioning command after this long")
	iamPropagation := flag.Duration("iam-propagation", mustDur(envOr("SPINBOOT_GKE_IAM_PROPAGATION", "3s")), "how long IAM policies refuse a newly created service account as not existing, as GCP does while it propagates (env SPINBOOT_GKE_IAM_PROPAGATION; admin PUT /iam/propagation)")
	projectList := flag.String("projects", "", "comma-separated project IDs that exist (empty: every well-formed ID exists)")
	flag.Parse()
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)

	ctx, cancel := context.WithCancel(context.Background())
	gke := newContainer(ctx, *latency, *version, &provisioner{provisionCmd: *provCmd, deprovisionCmd: *deprovCmd, nodesCmd: *nodesCmd, timeout: *provTimeout})
	iamSrv := newIAMAdmin()
	iamSrv.setPropagation(*iamPropagation)
	proj := &projects{known: map[string]bool{}, policies: sandboxsrv.NewPolicyStore()}
	for _, p := range strings.Split(*projectList, ",") {
		if p = strings.TrimSpace(p); p != "" {
			proj.known[p] = true
		}
	}
	check := checkMember(iamSrv, gke)
	iamSrv.policies.MemberCheck = check
	proj.policies.MemberCheck = check

	srv, err := sandboxsrv.New("gke-emulator", &o, nil)
	if err != nil {
		log.Print(err)
		os.Exit(2)
	}
	containerpb.RegisterClusterManagerServer(srv.GRPC, gke)
	adminpb.RegisterIAMServer(srv.GRPC, iamSrv)
	resourcemanagerpb.RegisterProjectsServer(srv.GRPC, proj)
	ar := registerArtifactRegistry(srv, proj)
	registerTroubleshooter(srv, ar, iamSrv) // ar.go, troubleshoot.go
	iamSrv.onDelete = func(member, deleted string) {
		proj.policies.RenameMember(member, deleted)
		ar.policies.RenameMember(member, deleted)
	}
	registerMetadata(srv, gke, iamSrv) // metadata.go: Workload Identity tokens
	registerIAMAdmin(srv, iamSrv)      // iam.go: /iam/propagation
	registerLogging(srv, gke)          // logging.go: Cloud Audit Logs of the backing clusters
	// /clusters shows what tests cannot get through the API: which sandbox control plane backs which cluster.
	srv.Admin.HandleFunc("/clusters", func(w http.ResponseWriter, _ *http.Request) {
		gke.mu.Lock()
		out := map[string]any{}
		for k, c := range gke.clusters {
			e := map[string]any{"status": c.c.Status.String(), "busy_operation": c.busy}
			if c.provision != nil {
				e["endpoint"], e["admin_kubeconfig"] = c.provision.endpoint, c.provision.kubeconfig
			}
			out[k] = e
		}
		gke.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(out)
	})
	err = srv.Serve(func() {
		cancel() // stops provisioning commands still running
		gke.shutdown(2 * time.Minute)
	})
	if err != nil {
		log.Print(err)
		os.Exit(1)
	}
}

func mustDur(s string) time.Duration {
	d, err := time.ParseDuration(s)
	if err != nil {
		log.Fatalf("bad duration %q: %v", s, err)
	}
	return d
}
