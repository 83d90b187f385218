# spinboot for CI (Cloud Build) and for operators without a Python toolchain: `docker run IMAGE plan -c spinboot.yaml`.
# No credentials are baked in or expected as files: spinboot uses Application Default Credentials, which in Cloud Build
# (and on GKE with Workload Identity) come from the metadata server for the build's or pod's service account.
# The base is pinned by version tag, the Python spinboot is tested on (bump deliberately); both stages use it.

FROM python:3.11.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
# Only what the wheel is built from (.dockerignore keeps the rest out of the context).
COPY pyproject.toml README.md ./
COPY spinboot ./spinboot
COPY halconfig ./halconfig
COPY rbac ./rbac
COPY releases ./releases
# The wheel of spinboot and of every runtime dependency; no [test] or [sandbox] extras.
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11.11-slim-bookworm
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
# A fixed non-root user: spinboot needs no privileges, it only calls Google and Kubernetes APIs.
RUN groupadd --gid 10001 spinboot \
    && useradd --uid 10001 --gid 10001 --create-home --shell /usr/sbin/nologin spinboot
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links=/wheels /wheels/spinboot-*.whl \
    && rm -rf /wheels
USER 10001:10001
WORKDIR /workspace
ENTRYPOINT ["spinboot"]
CMD ["--help"]
