"""front50's bucket: created with uniform bucket-level access and versioning (so a bad write can be undone), and
Spinnaker's service account may read the bucket and manage objects in it, nothing more. An existing bucket is adopted as it is.

The bucket and its grants come from render.gcp (``storage_spec`` and the ``storage`` part of ``iam_spec``): the
same objects gcp/storage.yaml and gcp/iam.yaml are rendered from."""

from __future__ import annotations

from typing import Callable

from google.api_core import exceptions

from ..changes import Change, happened
from ..render.gcp import Binding, BucketSpec
from .iam import BucketPolicy, ensure_bindings


class StorageError(Exception):
    pass


def _check_owner(bucket, spec: BucketSpec, project_number: Callable[[str], str | None] | None) -> None:
    """Bucket names are global: make sure the bucket is in the project the file says, not someone else's."""
    number = getattr(bucket, "project_number", None)
    owner = project_number(spec.project) if (number and project_number) else None
    if owner is not None and str(number) != str(owner):
        raise StorageError(f"bucket {bucket.name} belongs to project number {number}, not {spec.project}: "
                           "bucket names are global (choose another spinnaker.storage.bucket)")


def ensure_bucket(storage, spec: BucketSpec, bindings: list[Binding], dry_run: bool = False,
                  project_number: Callable[[str], str | None] | None = None) -> list[Change]:
    """The bucket as ``spec`` says (when it must be created), then the ``bindings`` on it."""
    kind = "GCS bucket"
    try:
        bucket = storage.get_bucket(spec.name)
        _check_owner(bucket, spec, project_number)
        # An existing bucket is adopted as it is: its versioning and location are the owner's choice.
        change = Change("unchanged", kind, spec.name)
    except exceptions.Forbidden:
        raise StorageError(f"bucket {spec.name} exists but this identity may not read it: bucket names are global, "
                           "it may belong to another project (choose another spinnaker.storage.bucket)") from None
    except exceptions.NotFound:
        change = Change("create", kind, spec.name, detail=", ".join(
            [spec.location] + (["uniform access"] if spec.uniform_bucket_level_access else [])
            + (["versioning"] if spec.versioning else [])))
        if not dry_run:
            bucket = storage.bucket(spec.name)
            bucket.iam_configuration.uniform_bucket_level_access_enabled = spec.uniform_bucket_level_access
            bucket.versioning_enabled = spec.versioning
            bucket.labels = dict(spec.labels)
            try:
                storage.create_bucket(bucket, project=spec.project, location=spec.location)
                happened(change)
            except exceptions.Conflict:  # an earlier, interrupted run made it, or another project owns the name
                _check_owner(storage.get_bucket(spec.name), spec, project_number)
    # Every grant iam_spec lists on the bucket (front50 needs objectAdmin and legacyBucketReader).
    policy = BucketPolicy(storage, spec.name)
    return [change] + ensure_bindings(lambda _resource: policy,
                                      [b for b in bindings if b.resource == spec.resource], dry_run)
