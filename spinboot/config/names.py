"""Naming rules and version rules for values in spinboot.yaml.

Each rule states what is allowed, so a rejected value can be explained. Sources:
- GKE cluster and node pool names: https://cloud.google.com/kubernetes-engine/docs/reference/rest/v1/projects.locations.clusters
- Project IDs: https://cloud.google.com/resource-manager/docs/creating-managing-projects
- Bucket names: https://cloud.google.com/storage/docs/buckets#naming
- Service account IDs: https://cloud.google.com/iam/docs/service-accounts-create
- Pub/Sub resource names: https://cloud.google.com/pubsub/docs/pubsub-basics#resource_names
- Spinnaker account names: Halyard's validator (lowercase letters, digits and dashes)
"""

from __future__ import annotations

import ipaddress
import re

GKE_NAME = re.compile(r"[a-z](?:[-a-z0-9]{0,38}[a-z0-9])?")
GKE_NAME_ALLOWED = "1 to 40 characters: lowercase letters, digits and '-', starting with a letter, not ending with '-'"

DNS1123_LABEL = re.compile(r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?")
DNS1123_ALLOWED = "1 to 63 characters: lowercase letters, digits and '-', starting and ending with a letter or digit"

ACCOUNT = re.compile(r"[a-z0-9](?:[-a-z0-9]{0,62}[a-z0-9])?")
ACCOUNT_ALLOWED = "lowercase letters, digits and '-', starting and ending with a letter or digit, up to 64 characters"

SA_ID = re.compile(r"[a-z](?:[-a-z0-9]{4,28}[a-z0-9])")
SA_ID_ALLOWED = "6 to 30 characters: lowercase letters, digits and '-', starting with a letter, not ending with '-'"

PUBSUB_NAME = re.compile(r"(?!goog)[A-Za-z][A-Za-z0-9\-_.~+%]{2,254}")
PUBSUB_ALLOWED = ("3 to 255 characters: letters, digits, '-', '_', '.', '~', '+', '%', starting with a letter, "
                  "not starting with 'goog'")

LOCATION = re.compile(r"[a-z]+-[a-z]+[0-9]{1,2}(?:-[a-z])?")
REGION = re.compile(r"[a-z]+-[a-z]+[0-9]{1,2}")
QUANTITY = re.compile(r"[0-9]+(?:\.[0-9]+)?(?:m|k|Ki|Mi|Gi|Ti|M|G|T)?")
MACHINE_TYPE = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+){1,4}")
HOSTNAME = re.compile(r"(?=.{1,253}(?::|$))[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*(?::[0-9]{1,5})?")
REPOSITORY = re.compile(r"[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*){0,8}")
IMAGE = re.compile(r"[a-z0-9.-]+(?::[0-9]{1,5})?(?:/[a-z0-9._-]+)+(?::[A-Za-z0-9_][A-Za-z0-9._-]{0,127}|@sha256:[a-f0-9]{64})")
LABEL_KEY = re.compile(r"[a-z][a-z0-9_-]{0,62}")
LABEL_VALUE = re.compile(r"[a-z0-9_-]{0,63}")

# Namespaces Kubernetes and GKE keep for themselves. Spinnaker deploying there can break the cluster.
SYSTEM_NAMESPACES = ("kube-system", "kube-public", "kube-node-lease")
SYSTEM_NAMESPACE_PREFIXES = ("gke-", "gmp-")

# Google's front ends reach backends from these ranges (https://cloud.google.com/load-balancing/docs/https#firewall-rules)
GOOGLE_FRONT_END_RANGES = ("35.191.0.0/16", "130.211.0.0/22")
# Private and loopback ranges: Tomcat's default trusted proxies, kept so node-local hops stay trusted.
PRIVATE_RANGES = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "127.0.0.0/8")
DEFAULT_TRUSTED_PROXIES = GOOGLE_FRONT_END_RANGES + PRIVATE_RANGES

# Registries served by Google (Artifact Registry and the gcr.io hosts it now serves). They answer polling that is
# too frequent with HTTP 429, after which even image pulls fail.
GOOGLE_REGISTRY_SUFFIXES = ("gcr.io", "pkg.dev")

# Halyard images: moved to ghcr.io in Spinnaker 2026.1.0; the old community registry's image is frozen.
FROZEN_HALYARD_REPOSITORY = "us-docker.pkg.dev/spinnaker-community/docker/halyard"
GHCR = "ghcr.io/spinnaker"

_CALENDAR = re.compile(r"(20[2-9][0-9])\.([0-9]{1,2})\.([0-9]{1,3})")
_SEMVER = re.compile(r"1\.([0-9]{1,2})\.([0-9]{1,3})")


_SUFFIX = {"": 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30,
           "Ti": 2 ** 40}


def quantity(text: str) -> float:
    """The value of a Kubernetes resource quantity such as 8Gi, 1500m or 2."""
    m = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)(m|k|Ki|Mi|Gi|Ti|M|G|T)?", text)
    return float(m[1]) * _SUFFIX[m[2] or ""]


def is_region(location: str) -> bool:
    return bool(REGION.fullmatch(location))


def is_system_namespace(ns: str) -> bool:
    return ns in SYSTEM_NAMESPACES or ns.startswith(SYSTEM_NAMESPACE_PREFIXES)


def is_google_registry(address: str) -> bool:
    host = address.split(":", 1)[0]
    return any(host == s or host.endswith("." + s) or host.endswith("-" + s) for s in GOOGLE_REGISTRY_SUFFIXES)


# Artifact Registry serves the gcr.io hosts from repositories named after the host, in these multi-regions
# (https://cloud.google.com/artifact-registry/docs/transition/gcr-repositories).
GCR_HOST_LOCATIONS = {"gcr.io": "us", "us.gcr.io": "us", "eu.gcr.io": "europe", "asia.gcr.io": "asia"}
_PKG_DEV = re.compile(r"([a-z0-9-]+)-docker\.pkg\.dev")


def artifact_registry_repository(address: str, repository: str) -> tuple[str | None, str]:
    """(Artifact Registry repository resource, problem) for an image path on a Google registry.

    ``LOCATION-docker.pkg.dev`` + ``PROJECT/REPOSITORY/IMAGE`` is
    ``projects/PROJECT/locations/LOCATION/repositories/REPOSITORY``; ``gcr.io`` + ``PROJECT/IMAGE`` is the
    ``gcr.io`` repository of PROJECT (https://cloud.google.com/artifact-registry/docs/docker/names). The project is
    also the one whose ``gcr`` topic announces the image's pushes.
    """
    host = address.split(":", 1)[0]
    parts = repository.split("/")
    m = _PKG_DEV.fullmatch(host)
    if m:
        if len(parts) < 3:
            return None, (f"{repository!r} is not an Artifact Registry image path on {host} (allowed: "
                          "PROJECT/REPOSITORY/IMAGE, e.g. acme-platform/acme/tasks)")
        return f"projects/{parts[0]}/locations/{m[1]}/repositories/{parts[1]}", ""
    if host in GCR_HOST_LOCATIONS:
        if len(parts) < 2:
            return None, f"{repository!r} is not an image path on {host} (allowed: PROJECT/IMAGE, e.g. acme-platform/tasks)"
        return f"projects/{parts[0]}/locations/{GCR_HOST_LOCATIONS[host]}/repositories/{host}", ""
    return None, (f"{host} is not an Artifact Registry host spinboot knows (allowed: LOCATION-docker.pkg.dev, "
                  f"{', '.join(GCR_HOST_LOCATIONS)})")


def project_id_problem(value: str) -> str | None:
    allowed = ("6 to 30 characters: lowercase letters, digits and '-', starting with a letter, not ending with '-', "
               "not containing 'google'")
    if not re.fullmatch(r"[a-z][-a-z0-9]{4,28}[a-z0-9]", value):
        return f"{value!r} is not a valid project ID ({allowed})"
    if "google" in value:
        return f"{value!r} is not a valid project ID: it contains 'google' ({allowed})"
    return None


def bucket_problem(value: str) -> str | None:
    allowed = ("3 to 63 characters (222 with dots, 63 per dot-separated part): lowercase letters, digits, '-', '_' "
               "and '.', starting and ending with a letter or digit, not an IP address, not starting with 'goog', "
               "not containing 'google'")
    ok = re.fullmatch(r"[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]", value)
    if ok and "." not in value and len(value) > 63:
        ok = None
    if ok and any(len(part) > 63 or not part for part in value.split(".")):
        ok = None
    if ok and (value.startswith("goog") or "google" in value or ".." in value):
        ok = None
    if ok:
        try:
            ipaddress.ip_address(value)
            ok = None
        except ValueError:
            pass
    return None if ok else f"{value!r} is not a valid bucket name ({allowed})"


class SpinnakerVersion:
    """A parsed Spinnaker version. Calendar versions start at 2025.0.0, which is 1.38.0."""

    def __init__(self, text: str):
        self.text = text
        m = _CALENDAR.fullmatch(text)
        if m:
            self.calendar = True
            self.key = (int(m[1]), int(m[2]), int(m[3]))
            return
        m = _SEMVER.fullmatch(text)
        if m:
            self.calendar = False
            self.key = (1, int(m[1]), int(m[2]))
            return
        raise ValueError(f"{text!r} is not a Spinnaker version (allowed: a calendar version such as 2026.2.3, "
                         "or 1.x.y up to 1.38.x)")

    @property
    def uses_spring_boot_25_keys(self) -> bool:
        """Spinnaker 1.31 moved to Spring Boot 2.5+, where Tomcat's remote-IP settings are kebab-case."""
        return self.calendar or self.key >= (1, 31, 0)

    @property
    def images_on_ghcr(self) -> bool:
        return self.calendar and self.key >= (2026, 1, 0)

    @property
    def halyard_unsupported(self) -> bool:
        """Halyard is unsupported upstream from 2026.1.0 (kustomize is the supported install since)."""
        return self.calendar and self.key >= (2026, 1, 0)


def check_spinnaker_version(value: str) -> str:
    version = SpinnakerVersion(value)
    if not version.calendar and version.key[1] > 38:
        raise ValueError(f"{value!r} does not exist: after 1.38 Spinnaker uses calendar versions "
                         "(allowed: 1.x.y up to 1.38.x, or a calendar version; 2025.0.0 is 1.38.0)")
    if version.calendar and version.key < (2025, 0, 0):
        raise ValueError(f"{value!r} does not exist: calendar versions start at 2025.0.0 (allowed: 2025.0.0 or later)")
    return value


def default_halyard_image(version: str) -> str:
    """The Halyard image that ships with a Spinnaker version.

    From 2026.1.0 Spinnaker publishes its images to ghcr.io/spinnaker/<service>, tagged with the release; before,
    the community registry's halyard:stable was the published image (now frozen).
    """
    if SpinnakerVersion(version).images_on_ghcr:
        return f"{GHCR}/halyard:{version}"
    return f"{FROZEN_HALYARD_REPOSITORY}:stable"
