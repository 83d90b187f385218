"""The official Google clients spinboot uses, built once per run.

Credentials are Application Default Credentials (Workload Identity in Cloud Build or GKE, `gcloud auth
application-default login` on a workstation): spinboot never reads a JSON key. In the sandbox every client is the
same official client, pointed at the local stand-ins over insecure loopback channels with anonymous credentials.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import grpc
from google.api_core import client_options as co
from google.auth.credentials import AnonymousCredentials

CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"


@dataclass(frozen=True)
class SandboxEndpoints:
    """Where the sandbox's stand-ins listen (written by `spinboot sandbox up`)."""

    gke: str            # host:port: ClusterManager, IAM Admin, Resource Manager Projects, Logging
    pubsub: str         # host:port for PUBSUB_EMULATOR_HOST
    storage: str        # http://host:port for STORAGE_EMULATOR_HOST
    token: str          # the "Google access token" the sandbox's API servers accept

    @classmethod
    def load(cls, path: str | os.PathLike) -> "SandboxEndpoints":
        data = json.loads(Path(path).read_text())
        return cls(gke=data["gke"], pubsub=data["pubsub"], storage=data["storage"], token=data["token"])


class GoogleClients:
    """Lazily built clients; thread-safe to share across the engine's workers."""

    def __init__(self, sandbox: SandboxEndpoints | None = None):
        self.sandbox = sandbox
        self._lock = threading.Lock()
        if sandbox:
            # The Pub/Sub and Storage clients' own, documented way to reach an emulator.
            os.environ["PUBSUB_EMULATOR_HOST"] = sandbox.pubsub
            os.environ["STORAGE_EMULATOR_HOST"] = sandbox.storage

    # --- credentials ------------------------------------------------------------------------------------------

    @cached_property
    def _adc(self):
        import google.auth

        credentials, project = google.auth.default(scopes=[CLOUD_PLATFORM])
        return credentials

    @property
    def credentials(self):
        return AnonymousCredentials() if self.sandbox else self._adc

    def access_token(self) -> str:
        """A Google access token for GKE API servers (refreshed when it expires)."""
        if self.sandbox:
            return self.sandbox.token
        from google.auth.transport.requests import Request

        with self._lock:
            creds = self._adc
            if not creds.valid:
                creds.refresh(Request())
            return creds.token

    def _channel(self) -> grpc.Channel:
        return grpc.insecure_channel(self.sandbox.gke)

    # --- clients ----------------------------------------------------------------------------------------------

    @cached_property
    def container(self):
        from google.cloud import container_v1
        from google.cloud.container_v1.services.cluster_manager.transports import ClusterManagerGrpcTransport

        if self.sandbox:
            return container_v1.ClusterManagerClient(transport=ClusterManagerGrpcTransport(channel=self._channel()))
        return container_v1.ClusterManagerClient(credentials=self.credentials)

    @cached_property
    def iam(self):
        from google.cloud import iam_admin_v1
        from google.cloud.iam_admin_v1.services.iam.transports import IAMGrpcTransport

        if self.sandbox:
            return iam_admin_v1.IAMClient(transport=IAMGrpcTransport(channel=self._channel()))
        return iam_admin_v1.IAMClient(credentials=self.credentials)

    @cached_property
    def projects(self):
        from google.cloud import resourcemanager_v3
        from google.cloud.resourcemanager_v3.services.projects.transports import ProjectsGrpcTransport

        if self.sandbox:
            return resourcemanager_v3.ProjectsClient(transport=ProjectsGrpcTransport(channel=self._channel()))
        return resourcemanager_v3.ProjectsClient(credentials=self.credentials)

    @cached_property
    def artifact_registry(self):
        from google.cloud import artifactregistry_v1
        from google.cloud.artifactregistry_v1.services.artifact_registry.transports import ArtifactRegistryGrpcTransport

        if self.sandbox:
            return artifactregistry_v1.ArtifactRegistryClient(
                transport=ArtifactRegistryGrpcTransport(channel=self._channel()))
        return artifactregistry_v1.ArtifactRegistryClient(credentials=self.credentials)

    @cached_property
    def troubleshooter(self):
        from google.cloud import policytroubleshooter_v1
        from google.cloud.policytroubleshooter_v1.services.iam_checker.transports import IamCheckerGrpcTransport

        if self.sandbox:
            return policytroubleshooter_v1.IamCheckerClient(transport=IamCheckerGrpcTransport(channel=self._channel()))
        return policytroubleshooter_v1.IamCheckerClient(credentials=self.credentials)

    @cached_property
    def logging(self):
        """Cloud Logging (google-cloud-logging's gapic client): Cloud Audit Logs for ``spinboot drift --audit``. The
        sandbox serves GKE-shaped audit entries of its clusters on the GKE stand-in's port."""
        from google.cloud.logging_v2.services.logging_service_v2 import LoggingServiceV2Client
        from google.cloud.logging_v2.services.logging_service_v2.transports import LoggingServiceV2GrpcTransport

        if self.sandbox:
            return LoggingServiceV2Client(transport=LoggingServiceV2GrpcTransport(channel=self._channel()))
        return LoggingServiceV2Client(credentials=self.credentials)

    @cached_property
    def publisher(self):
        from google.cloud import pubsub_v1

        return pubsub_v1.PublisherClient(credentials=self.credentials)

    @cached_property
    def subscriber(self):
        from google.cloud import pubsub_v1

        return pubsub_v1.SubscriberClient(credentials=self.credentials)

    @cached_property
    def storage(self):
        from google.cloud import storage

        if self.sandbox:
            return storage.Client(project="sandbox", credentials=self.credentials,
                                  client_options=co.ClientOptions(api_endpoint=self.sandbox.storage))
        return storage.Client(credentials=self.credentials)
