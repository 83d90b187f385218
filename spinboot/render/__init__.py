"""Pure renderers: spinboot.yaml → every artifact (same input, same bytes)."""

from .bundle import MANIFEST, OutputDirError, bundle_hash, render_all, write_bundle

__all__ = ["MANIFEST", "OutputDirError", "bundle_hash", "render_all", "write_bundle"]
