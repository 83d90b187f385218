"""front50's bucket: created with uniform bucket-level access and versioning (so a bad write can be undone), and
Spinnaker's service account may read the bucket and manage objects in it, nothing more. An existing bucket is adopted as it is."""

from __future__ import annotations

from typing import Callable

from google.api_core import exceptions

from ..changes import Change, happened
from ..config.model import SpinbootConfig
from ..render.gcp import bindings_for
from .iam import BucketPolicy, ensure_bindings


class StorageError(Exception):
    pass


def _check_owner(bucket, cfg: SpinbootConfig, project_number: Callable[[str], str | None] | None) -> None:
    """Bucket names are global: make sure the bucket is in the project the file says, not someone else's."""
    number = getattr(bucket, "project_number", None)
    owner = project_number(cfg.storage_project) if (number and project_number) else None
    if owner is not None and str(number) != str(owner):
        raise StorageError(f"bucket {bucket.name} belongs to project number {number}, not {cfg.storage_project}: "
                           "bucket names are global (choose another spinnaker.storage.bucket)")


def ensure_bucket(storage, cfg: SpinbootConfig, dry_run: bool = False,
                  project_number: Callable[[str], str | None] | None = None) -> list[Change]:
    st = cfg.spinnaker.storage
    kind = "GCS bucket"
    try:
        bucket = storage.get_bucket(st.bucket)
        _check_owner(bucket, cfg, project_number)
        # An existing bucket is adopted as it is: its versioning and location are the owner's choice.
        change = Change("unchanged", kind, st.bucket)
    except exceptions.Forbidden:
        raise StorageError(f"bucket {st.bucket} exists but this identity may not read it: bucket names are global, "
                           "it may belong to another project (choose another spinnaker.storage.bucket)") from None
    except exceptions.NotFound:
        change = Change("create", kind, st.bucket, detail=f"{st.location}, uniform access, versioning")
        if not dry_run:
            bucket = storage.bucket(st.bucket)
            bucket.iam_configuration.uniform_bucket_level_access_enabled = True
            bucket.versioning_enabled = True
            bucket.labels = {"managed-by": "spinboot"}
            try:
                storage.create_bucket(bucket, project=cfg.storage_project, location=st.location)
                happened(change)
            except exceptions.Conflict:  # an earlier, interrupted run made it, or another project owns the name
                _check_owner(storage.get_bucket(st.bucket), cfg, project_number)
    # Every grant iam_spec lists on the bucket (front50 needs objectAdmin and legacyBucketReader).
    policy = BucketPolicy(storage, st.bucket)
    return [change] + ensure_bindings(lambda _resource: policy,
                                      bindings_for(cfg, "storage", f"projects/_/buckets/{st.bucket}"), dry_run)
