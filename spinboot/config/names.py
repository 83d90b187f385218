"""Naming rules and version rules for values in spinboot.yaml.

Each rule states what is allowed, so a rejected value can be explained. Sources:
- GKE cluster and node pool names: https://cloud.google.com/kubernetes-engine/docs/reference/rest/v1/projects.locations.clusters
- Project IDs: https://cloud.google.com/resource-manager/docs/creating-managing-projects
- Bucket names: https://cloud.google.com/storage/docs/buckets#naming
- Service account IDs: https://cloud.google.com/iam/docs/service-accounts-create
- Pub/Sub resource names: https://cloud.google.com/pubsub/docs/pubsub-basics#resource_names
- Spinnaker account names: Halyard's validator (lowercase letters, digits and dashes)
- Labels: https://cloud.google.com/compute/docs/labeling-resources#requirements (at most 64 per resource; keys
  start with a lowercase letter or an international character; keys and values up to 63 characters of lowercase
  letters, international characters, digits, '_' and '-'; each under 128 bytes)
- Image references: the Docker reference grammar (github.com/distribution/reference, reference.go)
- Namespaces: https://kubernetes.io/docs/concepts/overview/working-with-objects/namespaces/ ("Avoid creating
  namespaces with the prefix kube-, since it is reserved for Kubernetes system namespaces")
- Bucket locations: https://cloud.google.com/storage/docs/locations (regions such as US-CENTRAL1, dual-regions
  such as NAM4, multi-regions such as US; case-insensitive)
- Host names: RFC 1123 section 2.1 and RFC 1035 (labels of 1 to 63 letters, digits and '-', not starting or ending
  with '-', 253 characters in all); internationalized names as their ASCII form (IDNA, RFC 5891)

Values that reach a `hal` flag never start with '-': Halyard's parser (JCommander) takes the next word as an
option's value even when it starts with '-' (cbeust/jcommander#121), but a reader of configure.sh, and any other
parser, would take it for a flag.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata

from .problems import show

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
# The Docker reference grammar (github.com/distribution/reference, reference.go): a path component is lowercase
# letters and digits joined by one separator ('.', '_', '__' or a run of '-'); a tag is a word character then up to
# 127 of [\w.-]; a digest is ALGORITHM:HEX.
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
REPOSITORY = re.compile(rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT}){{0,8}}")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
# OCI's registered digest algorithms (image-spec descriptor.md): sha256 (64 hex digits) and sha512 (128).
_DIGEST = re.compile(r"sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128}")
MAX_IMAGE_NAME = 255  # distribution/reference: NameTotalLengthMax, the registry and the path together
_DNS_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")

# Namespaces Kubernetes and GKE keep for themselves. Spinnaker deploying there can break the cluster. Kubernetes
# reserves the whole kube- prefix; GKE's own components live in gke-* and gmp-* (Managed Prometheus).
SYSTEM_NAMESPACES = ("kube-system", "kube-public", "kube-node-lease")
SYSTEM_NAMESPACE_PREFIXES = ("kube-", "gke-", "gmp-")

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

# Spinnaker's release versions carry no leading zeros (2026.2.3, 1.38.1): "2026.02.3" names no release, and the
# image tag ghcr.io/spinnaker/halyard:2026.02.3 does not exist.
_NUM = r"(0|[1-9][0-9]{0,2})"
_CALENDAR = re.compile(rf"(20[2-9][0-9])\.{_NUM}\.{_NUM}")
_SEMVER = re.compile(rf"1\.{_NUM}\.{_NUM}")


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
            return None, (f"{show(repository)} is not an Artifact Registry image path on {host} (allowed: "
                          "PROJECT/REPOSITORY/IMAGE, e.g. acme-platform/acme/tasks)")
        return f"projects/{parts[0]}/locations/{m[1]}/repositories/{parts[1]}", ""
    if host in GCR_HOST_LOCATIONS:
        if len(parts) < 2:
            return None, f"{show(repository)} is not an image path on {host} (allowed: PROJECT/IMAGE, e.g. acme-platform/tasks)"
        return f"projects/{parts[0]}/locations/{GCR_HOST_LOCATIONS[host]}/repositories/{host}", ""
    return None, (f"{host} is not an Artifact Registry host spinboot knows (allowed: LOCATION-docker.pkg.dev, "
                  f"{', '.join(GCR_HOST_LOCATIONS)})")


def project_id_problem(value: str) -> str | None:
    allowed = ("6 to 30 characters: lowercase letters, digits and '-', starting with a letter, not ending with '-', "
               "not containing 'google'")
    if not re.fullmatch(r"[a-z][-a-z0-9]{4,28}[a-z0-9]", value):
        return f"{show(value)} is not a valid project ID ({allowed})"
    if "google" in value:
        return f"{show(value)} is not a valid project ID: it contains 'google' ({allowed})"
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
    # "Bucket names cannot contain "google" or close misspellings, such as "g00gle"." (buckets#naming)
    if ok and (value.startswith("goog") or re.search(r"g[o0][o0]g[l1]e", value) or ".." in value):
        ok = None
    if ok:
        try:
            ipaddress.ip_address(value)
            ok = None
        except ValueError:
            pass
    return None if ok else f"{show(value)} is not a valid bucket name ({allowed})"


def label_key_problem(key: str) -> str | None:
    """GCP label keys: 1 to 63 characters, a lowercase letter or international character first, then lowercase
    letters, international characters, digits, '_' and '-'; under 128 bytes (labeling-resources#requirements)."""
    allowed = ("1 to 63 characters: a lowercase letter or international character first, then lowercase letters, "
               "international characters, digits, '_' and '-'")
    if key.isascii():
        ok = 1 <= len(key) <= 63 and bool(_ASCII_LABEL_KEY.fullmatch(key))
    else:
        ok = 1 <= len(key) <= 63 and _label_char(key[0], first=True) and all(map(_label_char, key))
    if not ok:
        return f"{show(key)} is not a valid label key ({allowed})"
    if len(key.encode()) >= 128:
        return f"{show(key)} is {len(key.encode())} bytes in UTF-8 (allowed: under 128 bytes)"
    return None


def label_value_problem(value: str) -> str | None:
    allowed = "up to 63 lowercase letters, international characters, digits, '_' and '-'; may be empty"
    ok = bool(_ASCII_LABEL_VALUE.fullmatch(value)) if value.isascii() else all(map(_label_char, value))
    if len(value) > 63 or not ok:
        return f"{show(value)} is not a valid label value ({allowed})"
    if len(value.encode()) >= 128:
        return f"{show(value)} is {len(value.encode())} bytes in UTF-8 (allowed: under 128 bytes)"
    return None


_ASCII_LABEL_KEY = re.compile(r"[a-z][a-z0-9_-]*")
_ASCII_LABEL_VALUE = re.compile(r"[a-z0-9_-]*")


def _label_char(ch: str, first: bool = False) -> bool:
    # Google's own pattern: keys [\p{Ll}\p{Lo}][\p{Ll}\p{Lo}\p{N}_-]*, values [\p{Ll}\p{Lo}\p{N}_-]*.
    cat = unicodedata.category(ch)
    if first:
        return cat in ("Ll", "Lo")
    return cat in ("Ll", "Lo") or (ch.isdigit() and ch.isascii()) or ch in "_-"


def dns_name_problem(host: str, what: str = "host name") -> str | None:
    """A host name as RFC 1123 allows it in a URL (or an IPv4 address); an internationalized name must be written in
    its ASCII (punycode) form, which is what browsers send and what TLS certificates and Gate's redirects carry."""
    if not host:
        return f"the {what} is empty"
    if len(host) > 253:
        return f"the {what} is {len(host)} characters (allowed: at most 253)"
    if not host.isascii():
        try:
            import idna

            ascii_form = idna.encode(host, uts46=True).decode()
            return f"{show(host)}: write the {what} in its ASCII form, {ascii_form} (allowed: letters, digits, '-' and '.')"
        except Exception:  # idna.IDNAError, UnicodeError: not a valid internationalized name either
            return f"{show(host)} is not a valid {what}, nor an internationalized one (IDNA)"
    if host != host.lower():
        why = " (browsers send it lowercased, and Gate compares origins as text)" if what == "host name" else ""
        return f"{show(host)}: write the {what} in lowercase, {host.lower()}{why}"
    if host.endswith("."):
        return f"{show(host)}: leave out the trailing dot (allowed: {host.rstrip('.')})"
    if re.fullmatch(r"[0-9.]+", host):
        try:
            ipaddress.IPv4Address(host)
            return None
        except ValueError:
            return f"{show(host)} is neither a host name nor an IPv4 address (a top-level domain is never all digits)"
    if len(host) > 253:
        return f"the {what} is {len(host)} characters (allowed: at most 253)"
    for label in host.split("."):
        if not _DNS_LABEL.fullmatch(label):
            return (f"{show(host)} is not a valid {what}: label {show(label)} (allowed: labels of 1 to 63 lowercase letters, "
                    "digits and '-', not starting or ending with '-', separated by '.')")
        if label.startswith("xn--"):
            try:
                import idna

                idna.decode(label)
            except Exception:
                return f"{show(host)}: {show(label)} is not valid punycode (IDNA)"
    return None


def _port_problem(port: str) -> str | None:
    if not re.fullmatch(r"[1-9][0-9]{0,4}", port) or int(port) > 65535:
        return f"port {show(port)} is not valid (allowed: port 1 to 65535, without leading zeros)"
    return None


def registry_host_problem(value: str) -> str | None:
    """A registry address as Docker and clouddriver take it: HOST[:PORT], HOST a DNS name or an IPv4 address, no
    scheme and no path."""
    allowed = "a host such as us-docker.pkg.dev or registry.example.com:5000, without https:// or a path"
    if "://" in value:
        return f"{show(value)}: leave out the scheme (allowed: {value.split('://', 1)[1].split('/')[0]}; {allowed})"
    if "/" in value:
        return f"{show(value)}: a registry address has no path; the path goes in repositories (allowed: {allowed})"
    host, _, port = value.partition(":")
    problem = dns_name_problem(host, "registry host") or (_port_problem(port) if port else None)
    return f"{show(value)} is not a valid registry address: {problem}" if problem else None


def image_problem(value: str) -> str | None:
    """A container image reference as the Docker reference grammar allows it, with the registry written out and a
    tag or digest (no implicit docker.io, no implicit :latest: the same file must always run the same Halyard)."""
    allowed = "REGISTRY/PATH:TAG or REGISTRY/PATH@sha256:DIGEST, e.g. ghcr.io/spinnaker/halyard:2026.2.3"
    rest, at, digest = value.partition("@")
    if at and not _DIGEST.fullmatch(digest):
        return f"{show(value)}: {show(digest)} is not a digest (allowed: sha256: and 64 lowercase hex digits)"
    name, tag = rest, ""
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        name, tag = rest[:colon], rest[colon + 1:]
        if not _TAG.fullmatch(tag):
            return (f"{show(value)}: tag {show(tag)} is not valid (allowed: a letter, digit or '_', then up to 127 letters, "
                    "digits, '_', '.' and '-')")
    if not tag and not at:
        return f"{show(value)} has no tag or digest (allowed: {allowed})"
    domain, _, path = name.partition("/")
    if not path or not ("." in domain or ":" in domain or domain == "localhost"):
        # Docker reads a first component without '.', ':' or localhost as a path on docker.io.
        return f"{show(value)} names no registry (allowed: {allowed}; Docker Hub is docker.io/...)"
    host, _, port = domain.partition(":")
    problem = dns_name_problem(host, "registry host") or (_port_problem(port) if port else None)
    if problem:
        return f"{show(value)}: {problem}"
    if not REPOSITORY.fullmatch(path):
        return (f"{show(value)}: {show(path)} is not a valid image path (allowed: lowercase letters and digits, joined by "
                "'.', '_', '__' or '-', in parts separated by '/')")
    if len(name) > MAX_IMAGE_NAME:
        return f"{show(value)}: the name is {len(name)} characters (allowed: at most {MAX_IMAGE_NAME})"
    return None


def url_problem(value: str) -> str | None:
    """http(s)://HOST[:PORT][/PATH], HOST a DNS name or IPv4 address, the path unreserved characters or %XX."""
    allowed = ("http(s)://host[:port][/path], host a DNS name in lowercase ASCII, port 1 to 65535, no user, query, "
               "fragment or spaces")
    m = re.fullmatch(r"(https?)://([^/:?#@\s]*)(?::([^/?#\s]*))?(/[^?#\s]*)?", value)
    if not m:
        return f"{show(value)} is not a URL (allowed: {allowed})"
    problem = dns_name_problem(m[2]) or (_port_problem(m[3]) if m[3] is not None else None)
    if problem:
        return f"{show(value)} is not a URL: {problem}"
    # Unreserved characters and %XX escapes only (RFC 3986 section 2): the URL reaches configure.sh, Gate's
    # redirects and Deck's settings as is.
    path = m[4] or ""
    if not re.fullmatch(r"(?:[A-Za-z0-9._~/-]|%[0-9A-Fa-f]{2})*", path):
        return (f"{show(value)} is not a URL: its path {show(path)} may hold only letters, digits, '.', '_', '~', '-', '/' "
                f"and %XX escapes (allowed: {allowed})")
    return None


def storage_location_problem(value: str) -> str | None:
    """A Cloud Storage bucket location: a multi-region (US), a dual-region (NAM4) or a region (US-CENTRAL1)."""
    if re.fullmatch(r"[A-Za-z]{2,10}[0-9]{0,2}|[A-Za-z]+-[A-Za-z]+[0-9]{1,2}", value):
        return None
    return (f"{show(value)} is not a Cloud Storage location (allowed: a multi-region such as us, a dual-region such as "
            "nam4, or a region such as us-central1)")


def root_folder_problem(value: str) -> str | None:
    allowed = "1 to 100 letters, digits, '.', '_' and '-', not starting with '-', not '.' or '..'"
    if not re.fullmatch(r"[A-Za-z0-9_.][A-Za-z0-9._-]{0,99}", value) or value in (".", ".."):
        return f"{show(value)} is not a valid folder name ({allowed})"
    return None


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
        hint = ""
        bare = text[1:] if text[:1] in "vV" else text
        fixed = ".".join(p.lstrip("0") or "0" for p in bare.split(".")) if re.fullmatch(r"[0-9]+(\.[0-9]+){2}", bare) else ""
        if fixed and fixed != text and (_CALENDAR.fullmatch(fixed) or _SEMVER.fullmatch(fixed)):
            hint = f"; did you mean {fixed}?"
        raise ValueError(f"{show(text)} is not a Spinnaker version (allowed: a calendar version such as 2026.2.3, "
                         f"or 1.x.y up to 1.38.x, written without a 'v' or leading zeros{hint})")

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
        raise ValueError(f"{show(value)} does not exist: after 1.38 Spinnaker uses calendar versions "
                         "(allowed: 1.x.y up to 1.38.x, or a calendar version; 2025.0.0 is 1.38.0)")
    if version.calendar and version.key < (2025, 0, 0):
        raise ValueError(f"{show(value)} does not exist: calendar versions start at 2025.0.0 (allowed: 2025.0.0 or later)")
    return value


def default_halyard_image(version: str) -> str:
    """The Halyard image that ships with a Spinnaker version.

    From 2026.1.0 Spinnaker publishes its images to ghcr.io/spinnaker/<service>, tagged with the release; before,
    the community registry's halyard:stable was the published image (now frozen).
    """
    if SpinnakerVersion(version).images_on_ghcr:
        return f"{GHCR}/halyard:{version}"
    return f"{FROZEN_HALYARD_REPOSITORY}:stable"
