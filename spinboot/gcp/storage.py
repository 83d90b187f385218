"""front50's bucket: created with uniform bucket-level access and versioning (so a bad write can be undone), and
Spinnaker's service account may manage objects in it, nothing more. An existing bucket is adopted as it is."""

from __future__ import annotations

from google.api_core import exceptions

from ..changes import Change
from ..config.model import SpinbootConfig
from .iam import BucketPolicy, ensure_binding


def ensure_bucket(storage, cfg: SpinbootConfig, dry_run: bool = False) -> list[Change]:
    st = cfg.spinnaker.storage
    kind = "GCS bucket"
    try:
        storage.get_bucket(st.bucket)
        # An existing bucket is adopted as it is: its versioning and location are the owner's choice.
        change = Change("unchanged", kind, st.bucket)
    except exceptions.NotFound:
        change = Change("create", kind, st.bucket, detail=f"{st.location}, uniform access, versioning")
        if not dry_run:
            bucket = storage.bucket(st.bucket)
            bucket.iam_configuration.uniform_bucket_level_access_enabled = True
            bucket.versioning_enabled = True
            bucket.labels = {"managed-by": "spinboot"}
            try:
                storage.create_bucket(bucket, project=cfg.storage_project, location=st.location)
            except exceptions.Conflict:
                pass  # created by an earlier, interrupted run
    member = f"serviceAccount:{cfg.service_account_email}"
    binding = ensure_binding(BucketPolicy(storage, st.bucket), f"projects/_/buckets/{st.bucket}",
                             "roles/storage.objectAdmin", [member], dry_run=dry_run)
    return [change, binding]
