"""Read access to the Artifact Registry repositories clouddriver polls, granted on each repository only.

Halyard validates a docker-registry account by running its password command and listing tags, and clouddriver
does the same at every poll; both act as Spinnaker's Google service account, which therefore needs
``roles/artifactregistry.reader`` on the repository before configure.sh runs
(https://cloud.google.com/artifact-registry/docs/access-control#roles). spinboot never creates repositories:
they belong to the teams that push to them.
"""

from __future__ import annotations

from google.api_core import exceptions

from ..changes import Change
from ..config.model import SpinbootConfig
from ..render.gcp import bindings_for
from .iam import GrpcPolicy, ensure_binding


class RegistryAccessError(Exception):
    pass


def ensure_registry_access(client, cfg: SpinbootConfig, dry_run: bool = False) -> list[Change]:
    changes = []
    for b in bindings_for(cfg, "artifactregistry"):
        try:
            changes.append(ensure_binding(GrpcPolicy(client, b.resource), b.resource, b.role, b.members, dry_run))
        except exceptions.NotFound:
            raise RegistryAccessError(
                f"{b.resource} does not exist (or this identity may not see it): create the repository, or fix "
                "registries[].repositories in spinboot.yaml") from None
    return changes
