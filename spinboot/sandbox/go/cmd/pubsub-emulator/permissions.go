package main

import (
	"strings"

	"cloud.google.com/go/iam/apiv1/iampb"
	pb "cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"

	"spinboot.dev/sandbox/internal/sandboxsrv"
)

// permissions names what a Pub/Sub call made with an identity token needs, from Google's Pub/Sub access control
// page (https://cloud.google.com/pubsub/docs/access-control#required_permissions). Policies live on topics and
// subscriptions here; the project's policy is held by the GKE stand-in and not consulted, so a project-level
// grant does not count in this emulator (stricter than Google). Methods not listed are the operator's only.
func permissions(_ string, req any) ([]sandboxsrv.Check, bool) {
	on := func(perm, resource string) []sandboxsrv.Check {
		return []sandboxsrv.Check{{Permission: perm, Resource: resource}}
	}
	switch r := req.(type) {
	// Subscriber: what echo does (pull, ack, extend deadlines) and the reads around it.
	case *pb.PullRequest:
		return on("pubsub.subscriptions.consume", r.GetSubscription()), true
	case *pb.StreamingPullRequest: // the first message of the stream names the subscription
		return on("pubsub.subscriptions.consume", r.GetSubscription()), true
	case *pb.AcknowledgeRequest:
		return on("pubsub.subscriptions.consume", r.GetSubscription()), true
	case *pb.ModifyAckDeadlineRequest:
		return on("pubsub.subscriptions.consume", r.GetSubscription()), true
	case *pb.SeekRequest:
		return on("pubsub.subscriptions.consume", r.GetSubscription()), true
	case *pb.GetSubscriptionRequest:
		return on("pubsub.subscriptions.get", r.GetSubscription()), true
	case *pb.UpdateSubscriptionRequest:
		return on("pubsub.subscriptions.update", r.GetSubscription().GetName()), true
	case *pb.ModifyPushConfigRequest:
		return on("pubsub.subscriptions.update", r.GetSubscription()), true
	case *pb.DeleteSubscriptionRequest:
		return on("pubsub.subscriptions.delete", r.GetSubscription()), true
	case *pb.Subscription: // CreateSubscription: create in the project, attach to the topic
		return []sandboxsrv.Check{{Permission: "pubsub.subscriptions.create", Resource: project(r.GetName())},
			{Permission: "pubsub.topics.attachSubscription", Resource: r.GetTopic()}}, true
	case *pb.ListSubscriptionsRequest:
		return on("pubsub.subscriptions.list", r.GetProject()), true
	// Publisher.
	case *pb.PublishRequest:
		return on("pubsub.topics.publish", r.GetTopic()), true
	case *pb.GetTopicRequest:
		return on("pubsub.topics.get", r.GetTopic()), true
	case *pb.UpdateTopicRequest:
		return on("pubsub.topics.update", r.GetTopic().GetName()), true
	case *pb.DeleteTopicRequest:
		return on("pubsub.topics.delete", r.GetTopic()), true
	case *pb.Topic: // CreateTopic
		return on("pubsub.topics.create", project(r.GetName())), true
	case *pb.ListTopicsRequest:
		return on("pubsub.topics.list", r.GetProject()), true
	// IAMPolicy on topics and subscriptions. TestIamPermissions needs no permission: it answers what the
	// caller holds (iamServer.TestIamPermissions).
	case *iampb.GetIamPolicyRequest:
		return on("pubsub."+kind(r.GetResource())+".getIamPolicy", r.GetResource()), kind(r.GetResource()) != ""
	case *iampb.SetIamPolicyRequest:
		return on("pubsub."+kind(r.GetResource())+".setIamPolicy", r.GetResource()), kind(r.GetResource()) != ""
	case *iampb.TestIamPermissionsRequest:
		return nil, true
	}
	return nil, false
}

// project is "projects/P" of a Pub/Sub resource name.
func project(resource string) string {
	parts := strings.SplitN(resource, "/", 3)
	if len(parts) < 2 {
		return resource
	}
	return parts[0] + "/" + parts[1]
}
