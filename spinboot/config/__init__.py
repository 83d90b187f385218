"""spinboot.yaml: the schema (model), the loader with precise errors (loader) and cross-field rules (rules)."""

from .loader import ConfigError, Loaded, Problem, load_config, load_config_bytes
from .model import SpinbootConfig

__all__ = ["ConfigError", "Loaded", "Problem", "SpinbootConfig", "load_config", "load_config_bytes"]
