package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"log"
	"sort"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/container/apiv1/containerpb"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

const apiBase = "https://container.googleapis.com/v1/"

// validImageTypes are the node images GetServerConfig offers (and UpdateNodePool accepts, case-insensitively).
var validImageTypes = []string{"COS_CONTAINERD", "UBUNTU_CONTAINERD"}

// maxNodesPerPoolZone is GKE's quota-independent limit (1000 nodes per node pool per zone).
const maxNodesPerPoolZone = 1000

type cluster struct {
	loc
	c         *containerpb.Cluster
	busy      string // name of the operation running on this cluster, "" when idle
	provision *provisioned
	seq       int // bumps the etag on every change
}

type operation struct {
	loc
	op *containerpb.Operation
}

// container implements google.container.v1.ClusterManager over in-memory state. Every mutation returns an
// Operation that goes PENDING -> RUNNING -> DONE in the background, so clients must poll like at Google.
type container struct {
	containerpb.UnimplementedClusterManagerServer

	mu       sync.Mutex
	clusters map[string]*cluster // key: project/location/name
	ops      map[string]*operation
	wiPools  map[string]bool // workload pools that exist (a cluster ever enabled Workload Identity there)

	latency  time.Duration
	version  string
	prov     *provisioner
	baseCtx  context.Context
	inflight sync.WaitGroup
}

func newContainer(ctx context.Context, latency time.Duration, version string, prov *provisioner) *container {
	return &container{
		clusters: map[string]*cluster{}, ops: map[string]*operation{}, wiPools: map[string]bool{},
		latency: latency, version: version, prov: prov, baseCtx: ctx,
	}
}

func key(l loc, name string) string { return l.project + "/" + l.location + "/" + name }

// now uses fixed-width nanoseconds so timestamps sort as strings (RFC3339Nano trims trailing zeros).
func now() string { return time.Now().UTC().Format("2006-01-02T15:04:05.000000000Z") }

func clusterLink(l loc, name string) string {
	return fmt.Sprintf("%sprojects/%s/%s/%s/clusters/%s", apiBase, projectNumber(l.project), locKind(l.location), l.location, name)
}

func locKind(location string) string {
	if zoneRE.MatchString(location) {
		return "zones"
	}
	return "locations"
}

func (s *container) getCluster(l loc, name string) (*cluster, error) {
	c := s.clusters[key(l, name)]
	if c == nil {
		return nil, status.Errorf(codes.NotFound, "Not found: projects/%s/locations/%s/clusters/%s.", l.project, l.location, name)
	}
	return c, nil
}

func (s *container) idle(c *cluster) error {
	if c.busy != "" {
		return status.Errorf(codes.FailedPrecondition, "Cluster is running incompatible operation %s.", c.busy)
	}
	if c.c.Status == containerpb.Cluster_ERROR || c.c.Status == containerpb.Cluster_STOPPING {
		return status.Errorf(codes.FailedPrecondition, "Cluster %s is in %s state; only deletion is allowed.", c.c.Name, c.c.Status)
	}
	return nil
}

func (c *cluster) touch() {
	c.seq++
	c.c.Etag = fmt.Sprintf("%08x", c.seq)
	c.c.CurrentNodeCount = 0
	for _, np := range c.c.NodePools {
		np.Etag = fmt.Sprintf("%08x-%s", c.seq, np.Name)
		c.c.CurrentNodeCount += np.InitialNodeCount * int32(len(np.Locations))
	}
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// startOp registers a PENDING operation holding the cluster, then runs work in the background; work's result is
// applied under the lock by finish. The operation stays RUNNING until both the configured latency and work are done.
func (s *container) startOp(l loc, c *cluster, typ containerpb.Operation_Type, target string,
	work func(ctx context.Context) (any, error), finish func(result any, err error)) *containerpb.Operation {
	name := fmt.Sprintf("operation-%d-%s", time.Now().UnixMilli(), randHex(4))
	op := &containerpb.Operation{
		Name: name, Zone: l.location, Location: l.location, OperationType: typ, Status: containerpb.Operation_PENDING,
		SelfLink:   fmt.Sprintf("%sprojects/%s/%s/%s/operations/%s", apiBase, projectNumber(l.project), locKind(l.location), l.location, name),
		TargetLink: target, StartTime: now(),
	}
	s.ops[name] = &operation{l, op}
	c.busy = name
	snapshot := proto.Clone(op).(*containerpb.Operation)
	s.inflight.Add(1)
	go func() {
		defer s.inflight.Done()
		pending := min(s.latency/10, 200*time.Millisecond)
		time.Sleep(pending)
		s.mu.Lock()
		op.Status = containerpb.Operation_RUNNING
		s.mu.Unlock()
		timer := time.After(s.latency - pending)
		var res any
		var err error
		if work != nil {
			res, err = work(s.baseCtx)
		}
		<-timer
		s.mu.Lock()
		defer s.mu.Unlock()
		finish(res, err)
		c.busy = ""
		c.touch()
		op.Status = containerpb.Operation_DONE
		op.EndTime = now()
		op.Progress = &containerpb.OperationProgress{Status: containerpb.Operation_DONE}
		if err != nil {
			st := status.Convert(err)
			op.Error = &statuspb.Status{Code: int32(st.Code()), Message: st.Message()}
			op.StatusMessage = st.Message()
			log.Printf("operation %s (%s) failed: %v", name, typ, err)
		}
	}()
	return snapshot
}

// ---- clusters -------------------------------------------------------------------------------------------

func (s *container) checkPool(l loc, np *containerpb.NodePool, wi bool, field string) error {
	if err := validName(field+".name", np.Name); err != nil {
		return err
	}
	if np.Config == nil {
		np.Config = &containerpb.NodeConfig{}
	}
	cfg := np.Config
	if cfg.MachineType == "" {
		cfg.MachineType = "e2-medium" // GKE's default machine type
	}
	if _, ok := lookupMachine(cfg.MachineType); !ok {
		return status.Errorf(codes.InvalidArgument, "Invalid machine type %q in zone %q: machine type not found.", cfg.MachineType, zonesOf(l.location)[0])
	}
	if np.InitialNodeCount < 0 || np.InitialNodeCount > maxNodesPerPoolZone {
		return status.Errorf(codes.InvalidArgument, "Invalid value for field %q: %d. Must be between 0 and %d.", field+".initial_node_count", np.InitialNodeCount, maxNodesPerPoolZone)
	}
	if err := checkAutoscaling(np.Name, np.Autoscaling); err != nil {
		return err
	}
	if np.Autoscaling != nil {
		np.Autoscaling = liveAutoscaling(np.Autoscaling)
	}
	if cfg.DiskSizeGb == 0 {
		cfg.DiskSizeGb = 100
	}
	if cfg.DiskSizeGb < 10 || cfg.DiskSizeGb > 65536 {
		return status.Errorf(codes.InvalidArgument, "Invalid value for field %q: %d. Disk size must be between 10 and 65536 GB.", field+".config.disk_size_gb", cfg.DiskSizeGb)
	}
	if cfg.DiskType == "" {
		cfg.DiskType = "pd-balanced"
	}
	if cfg.ImageType == "" {
		cfg.ImageType = "COS_CONTAINERD"
	}
	if cfg.ServiceAccount == "" {
		cfg.ServiceAccount = "default"
	}
	if len(cfg.OauthScopes) == 0 {
		cfg.OauthScopes = []string{"https://www.googleapis.com/auth/cloud-platform"}
	}
	if w := cfg.WorkloadMetadataConfig; w != nil && w.Mode == containerpb.WorkloadMetadataConfig_GKE_METADATA && !wi {
		return status.Errorf(codes.InvalidArgument, "Node pool %q: workload_metadata_config.mode GKE_METADATA requires Workload Identity on the cluster.", np.Name)
	}
	if cfg.WorkloadMetadataConfig == nil && wi {
		// With Workload Identity on the cluster, new node pools default to the GKE metadata server.
		cfg.WorkloadMetadataConfig = &containerpb.WorkloadMetadataConfig{Mode: containerpb.WorkloadMetadataConfig_GKE_METADATA}
	}
	return nil
}

func (s *container) finishPool(l loc, clusterName string, np *containerpb.NodePool, version string) {
	if len(np.Locations) == 0 {
		np.Locations = zonesOf(l.location)
	}
	if np.Version == "" {
		np.Version = version
	}
	if np.Management == nil {
		np.Management = &containerpb.NodeManagement{AutoUpgrade: true, AutoRepair: true}
	}
	np.SelfLink = clusterLink(l, clusterName) + "/nodePools/" + np.Name
	np.InstanceGroupUrls = nil
	for _, z := range np.Locations {
		np.InstanceGroupUrls = append(np.InstanceGroupUrls, fmt.Sprintf("https://www.googleapis.com/compute/v1/projects/%s/zones/%s/instanceGroupManagers/gke-%s-%s-%s-grp", l.project, z, clusterName, np.Name, randHex(4)))
	}
	np.Status = containerpb.NodePool_PROVISIONING
}

func (s *container) CreateCluster(ctx context.Context, req *containerpb.CreateClusterRequest) (*containerpb.Operation, error) {
	l, err := parseParent(req.GetParent(), req.GetProjectId(), req.GetZone())
	if err != nil {
		return nil, err
	}
	if l.location == "-" {
		return nil, status.Error(codes.InvalidArgument, "Location \"-\" is not valid for create.")
	}
	in := req.GetCluster()
	if in == nil {
		return nil, status.Error(codes.InvalidArgument, "Cluster is required.")
	}
	c := proto.Clone(in).(*containerpb.Cluster)
	if err := validName("cluster.name", c.Name); err != nil {
		return nil, err
	}
	autopilot := c.GetAutopilot().GetEnabled()
	switch {
	case len(c.NodePools) > 0 && c.InitialNodeCount > 0:
		return nil, status.Error(codes.InvalidArgument, "Cluster.initial_node_count and Cluster.node_pools cannot both be set; use node_pools.")
	case len(c.NodePools) == 0 && !autopilot && c.InitialNodeCount <= 0:
		return nil, status.Error(codes.InvalidArgument, "Cluster.initial_node_count must be greater than zero.")
	case len(c.NodePools) == 0 && !autopilot:
		c.NodePools = []*containerpb.NodePool{{Name: "default-pool", Config: c.NodeConfig, InitialNodeCount: c.InitialNodeCount}}
	}
	if err := checkLabels("cluster.resource_labels", c.ResourceLabels); err != nil {
		return nil, err
	}
	wi := c.GetWorkloadIdentityConfig().GetWorkloadPool()
	if wi != "" && wi != l.project+".svc.id.goog" {
		return nil, status.Errorf(codes.InvalidArgument, "Invalid value for field \"cluster.workload_identity_config.workload_pool\": %q. Must be %q.", wi, l.project+".svc.id.goog")
	}
	seen := map[string]bool{}
	for i, np := range c.NodePools {
		if seen[np.Name] {
			return nil, status.Errorf(codes.InvalidArgument, "Node pool names must be unique: %q appears twice.", np.Name)
		}
		seen[np.Name] = true
		if err := s.checkPool(l, np, wi != "", fmt.Sprintf("cluster.node_pools[%d]", i)); err != nil {
			return nil, err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, exists := s.clusters[key(l, c.Name)]; exists {
		return nil, status.Errorf(codes.AlreadyExists, "Already exists: projects/%s/locations/%s/clusters/%s.", l.project, l.location, c.Name)
	}
	version := s.version
	if c.InitialClusterVersion != "" && c.InitialClusterVersion != "latest" && c.InitialClusterVersion != "-" {
		version = c.InitialClusterVersion
	}
	c.InitialClusterVersion = version
	c.CurrentMasterVersion = version
	c.CurrentNodeVersion = version
	if c.ReleaseChannel == nil {
		c.ReleaseChannel = &containerpb.ReleaseChannel{Channel: containerpb.ReleaseChannel_REGULAR}
	}
	c.Location = l.location
	c.Zone = l.location
	c.Locations = zonesOf(l.location)
	c.Id = randHex(16)
	c.LabelFingerprint = newLabelFingerprint()
	c.SelfLink = clusterLink(l, c.Name)
	c.CreateTime = now()
	c.Status = containerpb.Cluster_PROVISIONING
	c.NodeConfig = nil
	c.InitialNodeCount = 0
	if c.Network == "" {
		c.Network = "default"
	}
	if c.Subnetwork == "" {
		c.Subnetwork = "default"
	}
	c.ClusterIpv4Cidr = "10.4.0.0/14"
	c.ServicesIpv4Cidr = "10.8.0.0/20"
	if c.LoggingService == "" {
		c.LoggingService = "logging.googleapis.com/kubernetes"
	}
	if c.MonitoringService == "" {
		c.MonitoringService = "monitoring.googleapis.com/kubernetes"
	}
	if c.MasterAuth == nil {
		c.MasterAuth = &containerpb.MasterAuth{}
	}
	for _, np := range c.NodePools {
		s.finishPool(l, c.Name, np, version)
	}
	// provision != nil means "a control plane may exist": set before the command runs so shutdown and delete
	// also clean up after a half-finished provisioning.
	cl := &cluster{loc: l, c: c, provision: &provisioned{}}
	cl.touch()
	s.clusters[key(l, c.Name)] = cl
	if wi != "" {
		s.wiPools[wi] = true
	}
	provName := fmt.Sprintf("%s-%s-%s", l.project, l.location, c.Name)
	sizes := poolSizes(c.NodePools)
	return s.startOp(l, cl, containerpb.Operation_CREATE_CLUSTER, c.SelfLink,
		func(ctx context.Context) (any, error) {
			p, err := s.prov.provision(ctx, provName)
			for _, ps := range sizes {
				if err == nil {
					err = s.prov.nodes(ctx, provName, ps.pool, ps.count)
				}
			}
			return p, err
		},
		func(res any, err error) {
			if p, _ := res.(*provisioned); p != nil && p.endpoint != "" {
				cl.provision = p
				c.Endpoint = p.endpoint
				c.MasterAuth.ClusterCaCertificate = base64.StdEncoding.EncodeToString([]byte(p.caPEM))
				c.ControlPlaneEndpointsConfig = mergeEndpoint(c.ControlPlaneEndpointsConfig, p.endpoint)
			}
			if err != nil {
				// As at Google, a failed create leaves the cluster in ERROR; the caller deletes it.
				c.Status = containerpb.Cluster_ERROR
				c.StatusMessage = status.Convert(err).Message()
				for _, np := range c.NodePools {
					np.Status = containerpb.NodePool_ERROR
				}
				return
			}
			c.Status = containerpb.Cluster_RUNNING
			for _, np := range c.NodePools {
				np.Status = containerpb.NodePool_RUNNING
			}
		}), nil
}

type poolSize struct {
	pool  string
	count int
}

// poolSizes is each pool's total node count (per-zone count times zones), what the backing cluster should have.
func poolSizes(pools []*containerpb.NodePool) []poolSize {
	var out []poolSize
	for _, np := range pools {
		out = append(out, poolSize{np.Name, int(np.InitialNodeCount) * len(np.Locations)})
	}
	return out
}

func backingName(l loc, cluster string) string {
	return fmt.Sprintf("%s-%s-%s", l.project, l.location, cluster)
}

// mergeEndpoint fills the newer control-plane endpoint fields with the same address as Cluster.endpoint.
func mergeEndpoint(cfg *containerpb.ControlPlaneEndpointsConfig, endpoint string) *containerpb.ControlPlaneEndpointsConfig {
	if cfg == nil {
		cfg = &containerpb.ControlPlaneEndpointsConfig{}
	}
	if cfg.IpEndpointsConfig == nil {
		cfg.IpEndpointsConfig = &containerpb.ControlPlaneEndpointsConfig_IPEndpointsConfig{}
	}
	t := true
	cfg.IpEndpointsConfig.Enabled = &t
	cfg.IpEndpointsConfig.PublicEndpoint = endpoint
	return cfg
}

func (s *container) GetCluster(ctx context.Context, req *containerpb.GetClusterRequest) (*containerpb.Cluster, error) {
	l, ids, err := parseName(req.GetName(), []string{"clusters"}, req.GetProjectId(), req.GetZone(), req.GetClusterId())
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.getCluster(l, ids[0])
	if err != nil {
		return nil, err
	}
	return proto.Clone(c.c).(*containerpb.Cluster), nil
}

func (s *container) ListClusters(ctx context.Context, req *containerpb.ListClustersRequest) (*containerpb.ListClustersResponse, error) {
	l, err := parseParent(req.GetParent(), req.GetProjectId(), req.GetZone())
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	resp := &containerpb.ListClustersResponse{}
	for _, c := range s.clusters {
		if c.project == l.project && (l.location == "-" || c.location == l.location) {
			resp.Clusters = append(resp.Clusters, proto.Clone(c.c).(*containerpb.Cluster))
		}
	}
	sort.Slice(resp.Clusters, func(i, j int) bool { return resp.Clusters[i].SelfLink < resp.Clusters[j].SelfLink })
	return resp, nil
}

func (s *container) DeleteCluster(ctx context.Context, req *containerpb.DeleteClusterRequest) (*containerpb.Operation, error) {
	l, ids, err := parseName(req.GetName(), []string{"clusters"}, req.GetProjectId(), req.GetZone(), req.GetClusterId())
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.getCluster(l, ids[0])
	if err != nil {
		return nil, err
	}
	if c.busy != "" {
		return nil, status.Errorf(codes.FailedPrecondition, "Cluster is running incompatible operation %s.", c.busy)
	}
	c.c.Status = containerpb.Cluster_STOPPING
	for _, np := range c.c.NodePools {
		np.Status = containerpb.NodePool_STOPPING
	}
	provName := fmt.Sprintf("%s-%s-%s", l.project, l.location, c.c.Name)
	return s.startOp(l, c, containerpb.Operation_DELETE_CLUSTER, c.c.SelfLink,
		func(ctx context.Context) (any, error) { return nil, s.prov.deprovision(ctx, provName) },
		func(_ any, err error) {
			if err != nil {
				c.c.Status = containerpb.Cluster_ERROR
				c.c.StatusMessage = "delete failed: " + status.Convert(err).Message()
				return
			}
			c.provision = nil
			delete(s.clusters, key(l, c.c.Name))
		}), nil
}

// clusterUpdateFields are the ClusterUpdate fields the emulator applies. A known field outside this list is refused
// as UNIMPLEMENTED rather than silently ignored, so a test never passes on an update that did nothing. etag and
// desired_node_pool_id qualify an update; they are not updates themselves.
var clusterUpdateFields = map[string]bool{
	"desired_workload_identity_config": true, "desired_master_authorized_networks_config": true,
	"desired_release_channel": true, "desired_master_version": true, "desired_node_version": true,
	"desired_locations": true, "desired_logging_service": true, "desired_monitoring_service": true,
	"desired_addons_config": true, "desired_node_pool_autoscaling": true, "desired_private_cluster_config": true,
	"desired_enable_private_endpoint": true, "desired_image_type": true,
}

var clusterUpdateQualifiers = map[string]bool{"etag": true, "desired_node_pool_id": true}

// poolScoped are the updates that apply to one node pool, named by desired_node_pool_id ("required if
// desired_node_version, desired_image_family or desired_node_pool_autoscaling is specified and there is more than
// one node pool on the cluster", ClusterUpdate.desired_node_pool_id).
var poolScoped = map[string]bool{"desired_node_version": true, "desired_image_type": true, "desired_node_pool_autoscaling": true}

// UpdateCluster applies exactly one ClusterUpdate field: "Exactly one update can be applied to a cluster with each
// request, so at most one field can be provided" (ClusterUpdate,
// https://cloud.google.com/kubernetes-engine/docs/reference/rest/v1/ClusterUpdate). An update with no field is
// refused with GKE's "Must specify a field to update.", one with several or with fields this build of the API does
// not know with INVALID_ARGUMENT.
func (s *container) UpdateCluster(ctx context.Context, req *containerpb.UpdateClusterRequest) (*containerpb.Operation, error) {
	l, ids, err := parseName(req.GetName(), []string{"clusters"}, req.GetProjectId(), req.GetZone(), req.GetClusterId())
	if err != nil {
		return nil, err
	}
	u := req.GetUpdate()
	if u == nil {
		return nil, status.Error(codes.InvalidArgument, "Must specify a field to update.")
	}
	if len(u.ProtoReflect().GetUnknown()) > 0 {
		return nil, status.Error(codes.InvalidArgument, "Invalid ClusterUpdate: it carries fields unknown to google.container.v1.ClusterUpdate.")
	}
	var set []string
	u.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		if n := string(fd.Name()); !clusterUpdateQualifiers[n] {
			set = append(set, n)
		}
		return true
	})
	sort.Strings(set)
	switch {
	case len(set) == 0:
		return nil, status.Error(codes.InvalidArgument, "Must specify a field to update.")
	case len(set) > 1:
		return nil, status.Errorf(codes.InvalidArgument,
			"Exactly one update can be applied to a cluster with each request, so at most one field can be provided; got %d: %s.",
			len(set), fieldList(set))
	case !clusterUpdateFields[set[0]]:
		return nil, status.Errorf(codes.Unimplemented, "sandbox gke-emulator does not implement ClusterUpdate field %q", set[0])
	}
	field := set[0]
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.getCluster(l, ids[0])
	if err != nil {
		return nil, err
	}
	if err := s.idle(c); err != nil {
		return nil, err
	}
	if u.Etag != "" && u.Etag != c.c.Etag {
		return nil, status.Errorf(codes.Aborted, "Cluster etag %q does not match the current etag %q: re-read the cluster.", u.Etag, c.c.Etag)
	}
	var pool *containerpb.NodePool
	if u.DesiredNodePoolId != "" {
		if _, pool = findPool(c, u.DesiredNodePoolId); pool == nil {
			return nil, poolNotFound(l, ids[0], u.DesiredNodePoolId)
		}
	} else if poolScoped[field] {
		if len(c.c.NodePools) != 1 {
			return nil, status.Errorf(codes.InvalidArgument, "desired_node_pool_id is required with %s on a cluster with %d node pools.", field, len(c.c.NodePools))
		}
		pool = c.c.NodePools[0]
	}
	if wi := u.GetDesiredWorkloadIdentityConfig().GetWorkloadPool(); wi != "" && wi != l.project+".svc.id.goog" {
		return nil, status.Errorf(codes.InvalidArgument, "Invalid value for field \"update.desired_workload_identity_config.workload_pool\": %q. Must be %q.", wi, l.project+".svc.id.goog")
	}
	for _, z := range u.DesiredLocations {
		if !zoneRE.MatchString(z) || !strings.HasPrefix(z, regionOf(l.location)+"-") {
			return nil, status.Errorf(codes.InvalidArgument, "Invalid location %q for a cluster in %q.", z, l.location)
		}
	}
	if err := checkAutoscaling(u.DesiredNodePoolId, u.DesiredNodePoolAutoscaling); err != nil {
		return nil, err
	}
	nodeVersion := ""
	if u.DesiredNodeVersion != "" {
		if nodeVersion, err = s.nodeVersion(c, "update.desired_node_version", u.DesiredNodeVersion); err != nil {
			return nil, err
		}
	}
	typ := containerpb.Operation_UPDATE_CLUSTER
	switch field {
	case "desired_master_version":
		typ = containerpb.Operation_UPGRADE_MASTER
	case "desired_node_version", "desired_image_type", "desired_node_pool_autoscaling":
		typ = containerpb.Operation_UPGRADE_NODES
	}
	c.c.Status = containerpb.Cluster_RECONCILING
	u = proto.Clone(u).(*containerpb.ClusterUpdate)
	return s.startOp(l, c, typ, c.c.SelfLink, nil, func(any, error) {
		cc := c.c
		cc.Status = containerpb.Cluster_RUNNING
		switch {
		case u.DesiredWorkloadIdentityConfig != nil:
			if u.DesiredWorkloadIdentityConfig.WorkloadPool == "" {
				cc.WorkloadIdentityConfig = nil
			} else {
				cc.WorkloadIdentityConfig = u.DesiredWorkloadIdentityConfig
				s.wiPools[u.DesiredWorkloadIdentityConfig.WorkloadPool] = true
			}
		case u.DesiredMasterAuthorizedNetworksConfig != nil:
			cc.MasterAuthorizedNetworksConfig = u.DesiredMasterAuthorizedNetworksConfig
		case u.DesiredReleaseChannel != nil:
			cc.ReleaseChannel = u.DesiredReleaseChannel
		case u.DesiredMasterVersion != "":
			v := u.DesiredMasterVersion
			if v == "latest" || v == "-" { // "-": "picks the default Kubernetes version" (desired_master_version)
				v = s.version
			}
			cc.CurrentMasterVersion = v
		case len(u.DesiredLocations) > 0:
			cc.Locations = u.DesiredLocations
		case u.DesiredLoggingService != "":
			cc.LoggingService = u.DesiredLoggingService
		case u.DesiredMonitoringService != "":
			cc.MonitoringService = u.DesiredMonitoringService
		case u.DesiredAddonsConfig != nil:
			cc.AddonsConfig = u.DesiredAddonsConfig
		case u.DesiredPrivateClusterConfig != nil:
			cc.PrivateClusterConfig = u.DesiredPrivateClusterConfig
		case u.DesiredEnablePrivateEndpoint != nil:
			if cc.PrivateClusterConfig == nil {
				cc.PrivateClusterConfig = &containerpb.PrivateClusterConfig{}
			}
			cc.PrivateClusterConfig.EnablePrivateEndpoint = *u.DesiredEnablePrivateEndpoint
		case nodeVersion != "":
			setNodeVersion(c, pool, nodeVersion)
		case u.DesiredImageType != "":
			pool.Config.ImageType = u.DesiredImageType
		case u.DesiredNodePoolAutoscaling != nil:
			pool.Autoscaling = liveAutoscaling(u.DesiredNodePoolAutoscaling)
		}
	}), nil
}

// ---- node pools -----------------------------------------------------------------------------------------

func findPool(c *cluster, name string) (int, *containerpb.NodePool) {
	for i, np := range c.c.NodePools {
		if np.Name == name {
			return i, np
		}
	}
	return -1, nil
}

func poolNotFound(l loc, cluster, pool string) error {
	return status.Errorf(codes.NotFound, "Not found: projects/%s/locations/%s/clusters/%s/nodePools/%s.", l.project, l.location, cluster, pool)
}

func (s *container) poolReq(name, project, zone, clusterID, poolID string) (loc, *cluster, *containerpb.NodePool, error) {
	l, ids, err := parseName(name, []string{"clusters", "nodePools"}, project, zone, clusterID, poolID)
	if err != nil {
		return l, nil, nil, err
	}
	c, err := s.getCluster(l, ids[0])
	if err != nil {
		return l, nil, nil, err
	}
	_, np := findPool(c, ids[1])
	if np == nil {
		return l, c, nil, poolNotFound(l, ids[0], ids[1])
	}
	return l, c, np, nil
}

func (s *container) ListNodePools(ctx context.Context, req *containerpb.ListNodePoolsRequest) (*containerpb.ListNodePoolsResponse, error) {
	l, ids, err := parseName(req.GetParent(), []string{"clusters"}, req.GetProjectId(), req.GetZone(), req.GetClusterId())
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.getCluster(l, ids[0])
	if err != nil {
		return nil, err
	}
	resp := &containerpb.ListNodePoolsResponse{}
	for _, np := range c.c.NodePools {
		resp.NodePools = append(resp.NodePools, proto.Clone(np).(*containerpb.NodePool))
	}
	return resp, nil
}

func (s *container) GetNodePool(ctx context.Context, req *containerpb.GetNodePoolRequest) (*containerpb.NodePool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, _, np, err := s.poolReq(req.GetName(), req.GetProjectId(), req.GetZone(), req.GetClusterId(), req.GetNodePoolId())
	if err != nil {
		return nil, err
	}
	return proto.Clone(np).(*containerpb.NodePool), nil
}

func (s *container) CreateNodePool(ctx context.Context, req *containerpb.CreateNodePoolRequest) (*containerpb.Operation, error) {
	l, ids, err := parseName(req.GetParent(), []string{"clusters"}, req.GetProjectId(), req.GetZone(), req.GetClusterId())
	if err != nil {
		return nil, err
	}
	if req.GetNodePool() == nil {
		return nil, status.Error(codes.InvalidArgument, "Node pool is required.")
	}
	np := proto.Clone(req.GetNodePool()).(*containerpb.NodePool)
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.getCluster(l, ids[0])
	if err != nil {
		return nil, err
	}
	if err := s.checkPool(l, np, c.c.GetWorkloadIdentityConfig().GetWorkloadPool() != "", "node_pool"); err != nil {
		return nil, err
	}
	if _, dup := findPool(c, np.Name); dup != nil {
		return nil, status.Errorf(codes.AlreadyExists, "Already exists: projects/%s/locations/%s/clusters/%s/nodePools/%s.", l.project, l.location, ids[0], np.Name)
	}
	if err := s.idle(c); err != nil {
		return nil, err
	}
	if len(np.Locations) == 0 {
		np.Locations = c.c.Locations
	}
	s.finishPool(l, ids[0], np, c.c.CurrentNodeVersion)
	c.c.NodePools = append(c.c.NodePools, np)
	c.c.Status = containerpb.Cluster_RECONCILING
	total := int(np.InitialNodeCount) * len(np.Locations)
	return s.startOp(l, c, containerpb.Operation_CREATE_NODE_POOL, np.SelfLink,
		func(ctx context.Context) (any, error) {
			return nil, s.prov.nodes(ctx, backingName(l, ids[0]), np.Name, total)
		},
		func(_ any, err error) {
			c.c.Status = containerpb.Cluster_RUNNING
			np.Status = containerpb.NodePool_RUNNING
			if err != nil {
				np.Status = containerpb.NodePool_ERROR
				np.StatusMessage = status.Convert(err).Message()
			}
		}), nil
}

func (s *container) DeleteNodePool(ctx context.Context, req *containerpb.DeleteNodePoolRequest) (*containerpb.Operation, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, c, np, err := s.poolReq(req.GetName(), req.GetProjectId(), req.GetZone(), req.GetClusterId(), req.GetNodePoolId())
	if err != nil {
		return nil, err
	}
	if err := s.idle(c); err != nil {
		return nil, err
	}
	np.Status = containerpb.NodePool_STOPPING
	c.c.Status = containerpb.Cluster_RECONCILING
	return s.startOp(l, c, containerpb.Operation_DELETE_NODE_POOL, np.SelfLink,
		func(ctx context.Context) (any, error) {
			return nil, s.prov.nodes(ctx, backingName(l, c.c.Name), np.Name, 0)
		},
		func(_ any, err error) {
			c.c.Status = containerpb.Cluster_RUNNING
			if err != nil {
				np.Status = containerpb.NodePool_ERROR
				np.StatusMessage = status.Convert(err).Message()
				return
			}
			if i, _ := findPool(c, np.Name); i >= 0 {
				c.c.NodePools = append(c.c.NodePools[:i], c.c.NodePools[i+1:]...)
			}
		}), nil
}

func (s *container) SetNodePoolSize(ctx context.Context, req *containerpb.SetNodePoolSizeRequest) (*containerpb.Operation, error) {
	if n := req.GetNodeCount(); n < 0 || n > maxNodesPerPoolZone {
		return nil, status.Errorf(codes.InvalidArgument, "Invalid value for field \"node_count\": %d. Must be between 0 and %d.", n, maxNodesPerPoolZone)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	l, c, np, err := s.poolReq(req.GetName(), req.GetProjectId(), req.GetZone(), req.GetClusterId(), req.GetNodePoolId())
	if err != nil {
		return nil, err
	}
	if err := s.idle(c); err != nil {
		return nil, err
	}
	np.Status = containerpb.NodePool_RECONCILING
	c.c.Status = containerpb.Cluster_RECONCILING
	n := req.GetNodeCount()
	total := int(n) * len(np.Locations)
	return s.startOp(l, c, containerpb.Operation_SET_NODE_POOL_SIZE, np.SelfLink,
		func(ctx context.Context) (any, error) {
			return nil, s.prov.nodes(ctx, backingName(l, c.c.Name), np.Name, total)
		},
		func(_ any, err error) {
			c.c.Status = containerpb.Cluster_RUNNING
			np.Status = containerpb.NodePool_RUNNING
			if err != nil {
				np.Status = containerpb.NodePool_RUNNING_WITH_ERROR
				np.StatusMessage = status.Convert(err).Message()
				return
			}
			np.StatusMessage = ""
			np.InitialNodeCount = n
		}), nil
}

// nodePoolUpdateFields are the UpdateNodePoolRequest fields the emulator applies, in the order GKE lists them when
// a request sets none ("At least one of [...] must be specified."). Another update field is refused as
// UNIMPLEMENTED rather than ignored; the rest of the request names the pool or carries its etag.
var nodePoolUpdateFields = []string{"node_version", "image_type", "locations", "workload_metadata_config",
	"upgrade_settings", "tags", "taints", "labels", "resource_labels", "machine_type", "disk_type", "disk_size_gb"}

var nodePoolRequestMeta = map[string]bool{"project_id": true, "zone": true, "cluster_id": true, "node_pool_id": true,
	"name": true, "etag": true}

// UpdateNodePool changes what the request sets and nothing else. node_version is documented as required, but the
// API refuses only a request that updates nothing, listing node_version among the alternatives: an empty
// node_version leaves the nodes' version alone, while "-" means "the Kubernetes master version" (an upgrade when the
// pool is behind the master), "latest" the highest valid version
// (https://cloud.google.com/kubernetes-engine/docs/reference/rest/v1/projects.locations.clusters.nodePools/update).
func (s *container) UpdateNodePool(ctx context.Context, req *containerpb.UpdateNodePoolRequest) (*containerpb.Operation, error) {
	known := map[string]bool{}
	for _, f := range nodePoolUpdateFields {
		known[f] = true
	}
	var set []string
	req.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		if n := string(fd.Name()); !nodePoolRequestMeta[n] {
			set = append(set, n)
		}
		return true
	})
	sort.Strings(set)
	if len(set) == 0 {
		return nil, status.Errorf(codes.InvalidArgument, "At least one of %s must be specified.", fieldList(nodePoolUpdateFields))
	}
	for _, f := range set {
		if !known[f] {
			return nil, status.Errorf(codes.Unimplemented, "sandbox gke-emulator does not implement UpdateNodePoolRequest field %q", f)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	l, c, np, err := s.poolReq(req.GetName(), req.GetProjectId(), req.GetZone(), req.GetClusterId(), req.GetNodePoolId())
	if err != nil {
		return nil, err
	}
	if err := s.idle(c); err != nil {
		return nil, err
	}
	if req.Etag != "" && req.Etag != np.Etag {
		return nil, status.Errorf(codes.Aborted, "Node pool etag %q does not match the current etag %q: re-read the node pool.", req.Etag, np.Etag)
	}
	version := ""
	if req.GetNodeVersion() != "" {
		if version, err = s.nodeVersion(c, "node_version", req.GetNodeVersion()); err != nil {
			return nil, err
		}
	}
	imageType := ""
	if t := req.GetImageType(); t != "" {
		for _, valid := range validImageTypes {
			if strings.EqualFold(t, valid) {
				imageType = valid
			}
		}
		if imageType == "" {
			return nil, status.Errorf(codes.InvalidArgument, "Invalid value for field \"image_type\": %q. Valid image types are %v.", t, validImageTypes)
		}
	}
	if req.GetMachineType() != "" {
		if _, ok := lookupMachine(req.GetMachineType()); !ok {
			return nil, status.Errorf(codes.InvalidArgument, "Invalid machine type %q in zone %q: machine type not found.", req.GetMachineType(), zonesOf(l.location)[0])
		}
	}
	if d := req.GetDiskSizeGb(); d != 0 && (d < 10 || d > 65536) {
		return nil, status.Errorf(codes.InvalidArgument, "Invalid value for field \"disk_size_gb\": %d. Disk size must be between 10 and 65536 GB.", d)
	}
	if w := req.GetWorkloadMetadataConfig(); w != nil && w.Mode == containerpb.WorkloadMetadataConfig_GKE_METADATA && c.c.GetWorkloadIdentityConfig().GetWorkloadPool() == "" {
		return nil, status.Errorf(codes.InvalidArgument, "Node pool %q: workload_metadata_config.mode GKE_METADATA requires Workload Identity on the cluster.", np.Name)
	}
	r := proto.Clone(req).(*containerpb.UpdateNodePoolRequest)
	np.Status = containerpb.NodePool_RECONCILING
	c.c.Status = containerpb.Cluster_RECONCILING
	var work func(context.Context) (any, error)
	if len(r.Locations) > 0 && len(r.Locations) != len(np.Locations) {
		total := int(np.InitialNodeCount) * len(r.Locations)
		work = func(ctx context.Context) (any, error) {
			return nil, s.prov.nodes(ctx, backingName(l, c.c.Name), np.Name, total)
		}
	}
	return s.startOp(l, c, containerpb.Operation_UPGRADE_NODES, np.SelfLink, work, func(_ any, err error) {
		c.c.Status = containerpb.Cluster_RUNNING
		np.Status = containerpb.NodePool_RUNNING
		if err != nil {
			np.Status = containerpb.NodePool_RUNNING_WITH_ERROR
			np.StatusMessage = status.Convert(err).Message()
			return
		}
		cfg := np.Config
		if version != "" {
			setNodeVersion(c, np, version)
		}
		if imageType != "" {
			cfg.ImageType = imageType
		}
		if r.MachineType != "" {
			cfg.MachineType = r.MachineType
		}
		if r.DiskSizeGb != 0 {
			cfg.DiskSizeGb = int32(r.DiskSizeGb)
		}
		if r.DiskType != "" {
			cfg.DiskType = r.DiskType
		}
		if len(r.Locations) > 0 {
			np.Locations = r.Locations
		}
		if r.WorkloadMetadataConfig != nil {
			cfg.WorkloadMetadataConfig = r.WorkloadMetadataConfig
		}
		if r.Labels != nil {
			cfg.Labels = r.Labels.Labels
		}
		if r.ResourceLabels != nil {
			cfg.ResourceLabels = r.ResourceLabels.Labels
		}
		if r.Taints != nil {
			cfg.Taints = r.Taints.Taints
		}
		if r.Tags != nil {
			cfg.Tags = r.Tags.Tags
		}
		if r.UpgradeSettings != nil {
			np.UpgradeSettings = r.UpgradeSettings
		}
	}), nil
}

// ---- operations -----------------------------------------------------------------------------------------

func (s *container) GetOperation(ctx context.Context, req *containerpb.GetOperationRequest) (*containerpb.Operation, error) {
	l, ids, err := parseName(req.GetName(), []string{"operations"}, req.GetProjectId(), req.GetZone(), req.GetOperationId())
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	op := s.ops[ids[0]]
	if op == nil || op.project != l.project || op.location != l.location {
		return nil, status.Errorf(codes.NotFound, "Not found: projects/%s/locations/%s/operations/%s.", l.project, l.location, ids[0])
	}
	return proto.Clone(op.op).(*containerpb.Operation), nil
}

func (s *container) ListOperations(ctx context.Context, req *containerpb.ListOperationsRequest) (*containerpb.ListOperationsResponse, error) {
	l, err := parseParent(req.GetParent(), req.GetProjectId(), req.GetZone())
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	resp := &containerpb.ListOperationsResponse{}
	for _, op := range s.ops {
		if op.project == l.project && (l.location == "-" || op.location == l.location) {
			resp.Operations = append(resp.Operations, proto.Clone(op.op).(*containerpb.Operation))
		}
	}
	sort.Slice(resp.Operations, func(i, j int) bool { return resp.Operations[i].StartTime < resp.Operations[j].StartTime })
	return resp, nil
}

func (s *container) GetServerConfig(ctx context.Context, req *containerpb.GetServerConfigRequest) (*containerpb.ServerConfig, error) {
	if _, err := parseParent(req.GetName(), req.GetProjectId(), req.GetZone()); err != nil {
		return nil, err
	}
	ch := func(c containerpb.ReleaseChannel_Channel) *containerpb.ServerConfig_ReleaseChannelConfig {
		return &containerpb.ServerConfig_ReleaseChannelConfig{Channel: c, DefaultVersion: s.version, ValidVersions: []string{s.version}}
	}
	return &containerpb.ServerConfig{
		DefaultClusterVersion: s.version, ValidMasterVersions: []string{s.version}, ValidNodeVersions: []string{s.version},
		DefaultImageType: "COS_CONTAINERD", ValidImageTypes: validImageTypes,
		Channels: []*containerpb.ServerConfig_ReleaseChannelConfig{
			ch(containerpb.ReleaseChannel_RAPID), ch(containerpb.ReleaseChannel_REGULAR), ch(containerpb.ReleaseChannel_STABLE),
		},
	}, nil
}

// wiPoolExists tells the IAM side whether "serviceAccount:POOL[ns/ksa]" members may be granted yet.
func (s *container) wiPoolExists(pool string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.wiPools[pool]
}

// shutdown deprovisions every sandbox cluster still up, so stopping the emulator leaves no control plane behind.
func (s *container) shutdown(timeout time.Duration) {
	s.inflight.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	s.mu.Lock()
	var names []string
	for _, c := range s.clusters {
		if c.provision != nil {
			names = append(names, fmt.Sprintf("%s-%s-%s", c.project, c.location, c.c.Name))
		}
	}
	s.mu.Unlock()
	for _, n := range names {
		if err := s.prov.deprovision(ctx, n); err != nil {
			log.Printf("deprovision %s on exit: %v", n, err)
		}
	}
}
