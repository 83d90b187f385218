// Command pubsub-emulator serves Google's own in-memory Pub/Sub fake (pstest) on a loopback gRPC port, adds
// the google.iam.v1.IAMPolicy service pstest lacks (topics and subscriptions, with etag semantics), and wraps
// everything in the sandbox's fault injection and call counters. The Python client reaches it through
// PUBSUB_EMULATOR_HOST. Calls carrying a sandbox identity token (Spinnaker's Workload Identity) are allowed
// only if the topic's or subscription's policy grants them (permissions.go); the operator's pass unchecked.
package main

import (
	"context"
	"flag"
	"log"
	"os"
	"strings"

	"cloud.google.com/go/iam/apiv1/iampb"
	pb "cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"cloud.google.com/go/pubsub/v2/pstest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"spinboot.dev/sandbox/internal/sandboxsrv"
)

// iamServer implements IAMPolicy over pstest's resources: a policy exists only while its resource does.
type iamServer struct {
	iampb.UnimplementedIAMPolicyServer
	ps       *pstest.GServer
	policies *sandboxsrv.PolicyStore
	gate     *sandboxsrv.Gate
}

// kind returns "topics" or "subscriptions" for a Pub/Sub resource name, or "" if it is neither.
func kind(resource string) string {
	parts := strings.Split(resource, "/")
	if len(parts) == 4 && parts[0] == "projects" && parts[1] != "" && parts[3] != "" {
		switch parts[2] {
		case "topics", "subscriptions":
			return parts[2]
		}
	}
	return ""
}

// exists asks pstest itself, so IAM agrees with it on NOT_FOUND (including after a delete).
func (s *iamServer) exists(ctx context.Context, resource string) error {
	var err error
	switch kind(resource) {
	case "topics":
		_, err = s.ps.GetTopic(ctx, &pb.GetTopicRequest{Topic: resource})
	case "subscriptions":
		_, err = s.ps.GetSubscription(ctx, &pb.GetSubscriptionRequest{Subscription: resource})
	default:
		return status.Errorf(codes.InvalidArgument, "Invalid resource name given (name=%s). Refer to https://cloud.google.com/pubsub/docs/pubsub-basics#resource_names for more information.", resource)
	}
	if status.Code(err) == codes.NotFound {
		return status.Errorf(codes.NotFound, "Resource not found (resource=%s).", resource[strings.LastIndex(resource, "/")+1:])
	}
	return err
}

func (s *iamServer) GetIamPolicy(ctx context.Context, req *iampb.GetIamPolicyRequest) (*iampb.Policy, error) {
	if err := s.exists(ctx, req.GetResource()); err != nil {
		return nil, err
	}
	return s.policies.Get(req.GetResource()), nil
}

func (s *iamServer) SetIamPolicy(ctx context.Context, req *iampb.SetIamPolicyRequest) (*iampb.Policy, error) {
	if err := s.exists(ctx, req.GetResource()); err != nil {
		return nil, err
	}
	return s.policies.Set(req.GetResource(), req.GetPolicy(), req.GetUpdateMask().GetPaths())
}

func (s *iamServer) TestIamPermissions(ctx context.Context, req *iampb.TestIamPermissionsRequest) (*iampb.TestIamPermissionsResponse, error) {
	if err := s.exists(ctx, req.GetResource()); err != nil {
		return nil, err
	}
	got, err := sandboxsrv.GrantedPermissions(req.GetPermissions(), "pubsub."+kind(req.GetResource())+".")
	if err != nil {
		return nil, err
	}
	if c := sandboxsrv.CallerFromContext(ctx, s.gate.Secret); !c.Operator() {
		// An identity learns only what the resource's policy grants it, as at Google.
		got = s.gate.Granted(c.Member, got, req.GetResource(), s.policies.Get(req.GetResource()))
	}
	return &iampb.TestIamPermissionsResponse{Permissions: got}, nil
}

// pubsubRole: Pub/Sub accepts its own roles and the basic ones on topics and subscriptions.
func pubsubRole(_, role string) bool {
	switch role {
	case "roles/owner", "roles/editor", "roles/viewer":
		return true
	}
	return strings.HasPrefix(role, "roles/pubsub.") || strings.Contains(role, "/roles/")
}

func main() {
	var o sandboxsrv.Options
	o.RegisterFlags()
	flag.Parse()
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)
	gate, err := sandboxsrv.GateFromEnv()
	if err != nil {
		log.Print(err)
		os.Exit(2)
	}
	srv, fake, err := newServer(&o, gate)
	if err != nil {
		log.Print(err)
		os.Exit(2)
	}
	if err := srv.Serve(func() { _ = fake.Close() }); err != nil {
		log.Print(err)
		os.Exit(1)
	}
}

// newServer puts pstest's services and the IAMPolicy service on one gRPC server that counts, injects faults and
// enforces IAM for identity tokens, in that order (the IAM interceptor runs inside the other two).
func newServer(o *sandboxsrv.Options, gate *sandboxsrv.Gate) (*sandboxsrv.Server, *pstest.Server, error) {
	// pstest insists on owning a listener; it gets a throwaway one on loopback and we serve its
	// implementation (GServer) on our own gRPC server, which carries the interceptors.
	fake := pstest.NewServerWithAddress("127.0.0.1:0")
	policies := sandboxsrv.NewPolicyStore()
	policies.RoleOK = pubsubRole
	// Deleting a topic or subscription deletes its policy, as at Google: a re-created one starts empty.
	after := func(method string, req any, err error) {
		if err != nil {
			return
		}
		switch r := req.(type) {
		case *pb.DeleteTopicRequest:
			policies.Delete(r.GetTopic())
		case *pb.DeleteSubscriptionRequest:
			policies.Delete(r.GetSubscription())
		}
	}
	srv, err := sandboxsrv.New("pubsub-emulator", o, after, gate.Interceptors(permissions, policies.Get)...)
	if err != nil {
		_ = fake.Close()
		return nil, nil, err
	}
	pb.RegisterPublisherServer(srv.GRPC, &fake.GServer)
	pb.RegisterSubscriberServer(srv.GRPC, &fake.GServer)
	pb.RegisterSchemaServiceServer(srv.GRPC, &fake.GServer)
	iampb.RegisterIAMPolicyServer(srv.GRPC, &iamServer{ps: &fake.GServer, policies: policies, gate: gate})
	return srv, fake, nil
}
