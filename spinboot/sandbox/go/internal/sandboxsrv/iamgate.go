package sandboxsrv

import (
	"context"

	"cloud.google.com/go/iam/apiv1/iampb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Check is one permission a call needs on one resource.
type Check struct{ Permission, Resource string }

// Resolver names the checks a request needs. known=false: the sandbox does not model this method's permissions,
// so only the operator may call it (stricter than Google, never more lenient). known with no checks: the method
// needs no permission (TestIamPermissions).
type Resolver func(fullMethod string, req any) (checks []Check, known bool)

// PolicyLookup returns the IAM policy set on a resource (nil or empty: nothing granted there).
type PolicyLookup func(resource string) *iampb.Policy

// authorize decides a call from caller and request: nil to let it through.
func (g *Gate) authorize(c Caller, method string, req any, resolve Resolver, policy PolicyLookup) error {
	if c.Invalid {
		return status.Error(codes.Unauthenticated, UnauthenticatedMessage)
	}
	if c.Operator() {
		return nil
	}
	checks, known := resolve(method, req)
	if !known {
		return status.Errorf(codes.PermissionDenied, "%s: the sandbox does not model the IAM permissions of %s, so only the operator may call it.",
			c.Member, method)
	}
	for _, ch := range checks {
		if !g.Allowed(c.Member, ch.Permission, ch.Resource, policy(ch.Resource)) {
			return status.Error(codes.PermissionDenied, g.Roles.DeniedMessage(c.Member, ch.Permission, ch.Resource))
		}
	}
	return nil
}

// Interceptors enforce IAM on calls carrying an identity token ("authorization: Bearer sbx1...."): a call is let
// through only if the policies on its resources grant a role holding each permission it needs. Calls without a
// token, or with the admin token, are the operator's and pass unchecked; any other bearer token is
// UNAUTHENTICATED. Pass them to New after the fault and counter interceptors, so a denial is counted like any
// other error and injected faults still come first, as a front end fails before IAM is consulted.
//
// A stream is checked on its first request message (StreamingPull names its subscription there): the handler's
// first Recv fails with the denial, which the handler returns, so the client sees the status on the stream.
func (g *Gate) Interceptors(resolve Resolver, policy PolicyLookup) []grpc.ServerOption {
	unary := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if err := g.authorize(CallerFromContext(ctx, g.Secret), info.FullMethod, req, resolve, policy); err != nil {
			return nil, err
		}
		return h(ctx, req)
	}
	stream := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		c := CallerFromContext(ss.Context(), g.Secret)
		if c.Invalid {
			return status.Error(codes.Unauthenticated, UnauthenticatedMessage)
		}
		if c.Operator() {
			return h(srv, ss)
		}
		return h(srv, &gatedStream{ServerStream: ss, check: func(m any) error {
			return g.authorize(c, info.FullMethod, m, resolve, policy)
		}})
	}
	return []grpc.ServerOption{grpc.ChainUnaryInterceptor(unary), grpc.ChainStreamInterceptor(stream)}
}

// gatedStream authorizes the first message received; later messages (acks, deadline changes on the same
// subscription) ride on that decision, as Pub/Sub checks a streaming pull when it opens.
type gatedStream struct {
	grpc.ServerStream
	check func(any) error
	done  bool
}

func (s *gatedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil || s.done {
		return err
	}
	s.done = true
	return s.check(m)
}
