"""What each Spinnaker service's image and code expect, read from spinnaker/spinnaker at spinnaker-release-2026.2.3.

Every value here is listed with its upstream file in docs/dev/kustomize-facts.md; the short citation sits next to it.
"""

from __future__ import annotations

from dataclasses import dataclass

RELEASE_REF = "spinnaker/spinnaker@spinnaker-release-2026.2.3"

# <svc>/Dockerfile.slim: `adduser -S -G spinnaker -u 10111 spinnaker` + `USER spinnaker` (every Java service).
SPINNAKER_UID = 10111
# deck/Dockerfile.slim: `USER www-data` on debian:stable-slim; Debian's base-passwd fixes www-data at uid/gid 33.
WWW_DATA_UID = 33

# The in-container config directory: SpinnakerApplicationPlugin.groovy adds
# -Dspring.config.import=optional:/opt/spinnaker/config/ to every service's start script, and kork's
# DefaultPropertiesBuilder sets spring.config.name=spinnaker,<service>, so spinnaker.yml, <svc>.yml and, with the
# `local` profile, <svc>-local.yml are read from it. deck/docker/run-apache2.sh copies settings-local.js from it.
CONFIG_DIR = "/opt/spinnaker/config"


@dataclass(frozen=True)
class Service:
    name: str
    port: int
    health_path: str | None  # None: probed by TCP (deck serves static files only)
    uid: int
    google: bool  # calls Google APIs, so its KSA carries the Workload Identity annotation


# Ports: server.port in <svc>/<svc>-web/config/<svc>.yml (keel: keel/keel-web/config/keel.yml, 7010); deck:
# DECK_PORT default 9000 in deck/docker/run-apache2.sh. Health: kork's SpringBoot1CompatibilityApplicationListener
# puts actuator endpoints on "/" (management.endpoints.web.base-path), so /health, as each Dockerfile.slim's
# HEALTHCHECK curls. Google callers: front50 (GCS), echo (Pub/Sub), clouddriver (Artifact Registry tokens, GCS
# artifacts), the same set the Halyard engine binds (render/profiles.py WORKLOAD_IDENTITY_SERVICES).
SERVICES: dict[str, Service] = {s.name: s for s in (
    Service("clouddriver", 7002, "/health", SPINNAKER_UID, True),
    Service("deck", 9000, None, WWW_DATA_UID, False),
    Service("echo", 8089, "/health", SPINNAKER_UID, True),
    Service("fiat", 7003, "/health", SPINNAKER_UID, False),
    Service("front50", 8080, "/health", SPINNAKER_UID, True),
    Service("gate", 8084, "/health", SPINNAKER_UID, False),
    Service("igor", 8088, "/health", SPINNAKER_UID, False),
    Service("kayenta", 8090, "/health", SPINNAKER_UID, False),
    Service("keel", 7010, "/health", SPINNAKER_UID, False),
    Service("orca", 8083, "/health", SPINNAKER_UID, False),
    Service("rosco", 8087, "/health", SPINNAKER_UID, False),
)}

# Redis: the image Halyard deploys at this release (KubernetesV2RedisService.java: "redis:6.2"), so a migration
# keeps the same server. docker-library/redis 6.2 Debian image: `groupadd -r -g 999 redis && useradd -r -g redis
# -u 999 redis`; its entrypoint only drops privileges when started as root, so running as 999 is what it expects.
REDIS_IMAGE = "redis:6.2"
REDIS_UID = 999
REDIS_PORT = 6379

# Default sizing when spinboot.yaml gives none: requests only (no CPU limit, memory limit = request), enough for
# the JVM's MaxRAMPercentage to size the heap. clouddriver's default comes from the config model (8Gi/12Gi).
DEFAULT_MEMORY = {"deck": "256Mi", "gate": "1Gi", "echo": "1Gi", "front50": "1Gi", "igor": "1Gi", "orca": "2Gi",
                  "rosco": "1Gi", "fiat": "1Gi", "kayenta": "1Gi", "keel": "2Gi", "redis": "512Mi"}
DEFAULT_CPU = {"deck": "100m", "redis": "100m"}  # JVM services: 500m
