"""gcp-storage-emulator (PyPI) as the sandbox runs it, with one correction: a bucket insert applies the request's
writable fields (labels, versioning, iamConfiguration, location, ...), as Cloud Storage's ``buckets.insert`` does
(https://cloud.google.com/storage/docs/json_api/v1/buckets/insert). The emulator keeps only the name on insert and
applies those fields on PATCH alone, so a bucket spinboot creates would lack the ``managed-by`` label destroy relies
on, and the settings gcp/storage.yaml shows.

Run as ``python -m spinboot.sandbox.storage_emulator start --host H --port P --in-memory`` (the emulator's own CLI).
"""

from __future__ import annotations

from http import HTTPStatus

from gcp_storage_emulator.handlers import buckets

_emulator_insert = buckets.insert


def insert(request, response, storage, *args, **kwargs):
    data = request.data or {}
    name = data.get("name")
    if not name:
        return _emulator_insert(request, response, storage, *args, **kwargs)   # its own 400
    bucket = buckets.create_bucket(name, storage)
    if not bucket:
        response.status = HTTPStatus.CONFLICT
        return response.json(buckets.CONFLICT)
    fields = {k: v for k, v in data.items() if k in buckets._WRITABLE_BUCKET_FIELDS}
    if fields:
        bucket = buckets._patch_bucket(bucket, fields)
        bucket["metageneration"] = "1"   # a new bucket's first generation, not a patch of one
        storage.create_bucket(name, bucket)
    return response.json(bucket)


def main() -> None:
    buckets.insert = insert   # the router reads handlers from the module when the server is created
    from gcp_storage_emulator.__main__ import main as emulator_main

    emulator_main()


if __name__ == "__main__":
    main()
