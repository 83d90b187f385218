package main

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"cloud.google.com/go/iam/apiv1/iampb"
	pb "cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"spinboot.dev/sandbox/internal/sandboxsrv"
)

const (
	secret = "admin-token"
	email  = "spinnaker@acme-platform.iam.gserviceaccount.com"
	topic  = "projects/acme-platform/topics/gcr"
	sub    = "projects/acme-platform/subscriptions/spinnaker-gcr"
)

// serve runs the emulator as main does (interceptors included) on a loopback port, with fault rules.
func serve(t *testing.T, faults string) *grpc.ClientConn {
	t.Helper()
	roles := filepath.Join(t.TempDir(), "roles.json")
	_ = os.WriteFile(roles, []byte(`{"roles": {"roles/pubsub.subscriber": {"permissions": ["pubsub.subscriptions.consume"]},
		"roles/pubsub.viewer": {"permissions": ["pubsub.subscriptions.get", "pubsub.topics.get"]}}}`), 0o600)
	r, err := sandboxsrv.LoadRoles(roles)
	if err != nil {
		t.Fatal(err)
	}
	o := &sandboxsrv.Options{Faults: []string{faults}}
	srv, fake, err := newServer(o, &sandboxsrv.Gate{Secret: secret, Roles: r})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.GRPC.Serve(lis) }()
	t.Cleanup(func() { srv.GRPC.Stop(); _ = fake.Close() })
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func as(token string) context.Context {
	ctx := context.Background()
	if token == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

func TestSubscriberNeedsItsGrant(t *testing.T) {
	conn := serve(t, "")
	pub, subs, iam := pb.NewPublisherClient(conn), pb.NewSubscriberClient(conn), iampb.NewIAMPolicyClient(conn)
	op := as("") // the operator: no credentials, allowed everything
	if _, err := pub.CreateTopic(op, &pb.Topic{Name: topic}); err != nil {
		t.Fatal(err)
	}
	if _, err := subs.CreateSubscription(op, &pb.Subscription{Name: sub, Topic: topic}); err != nil {
		t.Fatal(err)
	}
	id := sandboxsrv.MintToken(secret, email)

	_, err := subs.Pull(as(id), &pb.PullRequest{Subscription: sub, MaxMessages: 1})
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "pubsub.subscriptions.consume") ||
		!strings.Contains(err.Error(), "roles/pubsub.subscriber") {
		t.Fatalf("Pull without a grant: %v", err)
	}
	// StreamingPull names its subscription in the first message: the denial comes on the stream.
	stream, err := subs.StreamingPull(as(id))
	if err == nil {
		_ = stream.Send(&pb.StreamingPullRequest{Subscription: sub, StreamAckDeadlineSeconds: 10})
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("StreamingPull without a grant: %v", err)
	}
	if _, err := subs.Pull(as(sandboxsrv.MintToken("forged", email)), &pb.PullRequest{Subscription: sub}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("Pull with a forged token: %v", err)
	}

	pol := &iampb.Policy{Bindings: []*iampb.Binding{{Role: "roles/pubsub.subscriber", Members: []string{"serviceAccount:" + email}}}}
	if _, err := iam.SetIamPolicy(op, &iampb.SetIamPolicyRequest{Resource: sub, Policy: pol}); err != nil {
		t.Fatal(err)
	}
	if _, err := pub.Publish(op, &pb.PublishRequest{Topic: topic, Messages: []*pb.PubsubMessage{{Data: []byte(`{"action":"INSERT"}`)}}}); err != nil {
		t.Fatal(err)
	}
	resp, err := subs.Pull(as(id), &pb.PullRequest{Subscription: sub, MaxMessages: 1})
	if err != nil || len(resp.ReceivedMessages) != 1 {
		t.Fatalf("Pull with roles/pubsub.subscriber: %v %v", resp, err)
	}
	if _, err := subs.Acknowledge(as(id), &pb.AcknowledgeRequest{Subscription: sub, AckIds: []string{resp.ReceivedMessages[0].AckId}}); err != nil {
		t.Fatalf("Acknowledge with roles/pubsub.subscriber: %v", err)
	}
	if _, err := pub.Publish(op, &pb.PublishRequest{Topic: topic, Messages: []*pb.PubsubMessage{{Data: []byte("second")}}}); err != nil {
		t.Fatal(err)
	}
	stream, err = subs.StreamingPull(as(id))
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&pb.StreamingPullRequest{Subscription: sub, StreamAckDeadlineSeconds: 10}); err != nil {
		t.Fatal(err)
	}
	if got, err := stream.Recv(); err != nil || len(got.ReceivedMessages) != 1 || string(got.ReceivedMessages[0].Message.Data) != "second" {
		t.Fatalf("StreamingPull with roles/pubsub.subscriber: %v %v", got, err)
	}
	_ = stream.CloseSend()
	// subscriber holds consume, not get: GetSubscription and Publish stay denied.
	if _, err := subs.GetSubscription(as(id), &pb.GetSubscriptionRequest{Subscription: sub}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("GetSubscription without pubsub.subscriptions.get: %v", err)
	}
	if _, err := pub.Publish(as(id), &pb.PublishRequest{Topic: topic, Messages: []*pb.PubsubMessage{{Data: []byte("x")}}}); status.Code(err) != codes.PermissionDenied ||
		!strings.Contains(err.Error(), "pubsub.topics.publish") {
		t.Fatalf("Publish without a topic grant: %v", err)
	}
	got, err := iam.TestIamPermissions(as(id), &iampb.TestIamPermissionsRequest{Resource: sub,
		Permissions: []string{"pubsub.subscriptions.consume", "pubsub.subscriptions.get"}})
	if err != nil || strings.Join(got.Permissions, ",") != "pubsub.subscriptions.consume" {
		t.Fatalf("TestIamPermissions as the identity: %v %v", got, err)
	}
}

func TestFaultsComeBeforeIAM(t *testing.T) {
	conn := serve(t, "Pull=UNAVAILABLE:count=1")
	_, err := pb.NewSubscriberClient(conn).Pull(as(sandboxsrv.MintToken(secret, email)), &pb.PullRequest{Subscription: sub})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("first Pull: %v, want the injected UNAVAILABLE", err)
	}
	_, err = pb.NewSubscriberClient(conn).Pull(as(sandboxsrv.MintToken(secret, email)), &pb.PullRequest{Subscription: sub})
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("second Pull: %v, want PERMISSION_DENIED", err)
	}
}

func TestPermissionTable(t *testing.T) {
	for _, tc := range []struct {
		req  any
		want string
	}{
		{&pb.AcknowledgeRequest{Subscription: sub}, "pubsub.subscriptions.consume@" + sub},
		{&pb.ModifyAckDeadlineRequest{Subscription: sub}, "pubsub.subscriptions.consume@" + sub},
		{&pb.GetSubscriptionRequest{Subscription: sub}, "pubsub.subscriptions.get@" + sub},
		{&pb.GetTopicRequest{Topic: topic}, "pubsub.topics.get@" + topic},
		{&pb.Subscription{Name: sub, Topic: topic}, "pubsub.subscriptions.create@projects/acme-platform pubsub.topics.attachSubscription@" + topic},
		{&iampb.GetIamPolicyRequest{Resource: sub}, "pubsub.subscriptions.getIamPolicy@" + sub},
		{&iampb.TestIamPermissionsRequest{Resource: sub}, ""},
	} {
		checks, known := permissions("", tc.req)
		var got []string
		for _, c := range checks {
			got = append(got, c.Permission+"@"+c.Resource)
		}
		if !known || strings.Join(got, " ") != tc.want {
			t.Errorf("%T: %v (known %v), want %q", tc.req, got, known, tc.want)
		}
	}
	if _, known := permissions("", &pb.ListTopicSnapshotsRequest{}); known {
		t.Error("an unmodelled method is known")
	}
}
