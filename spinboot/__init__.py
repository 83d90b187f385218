"""spinboot: bootstrap and configure Spinnaker on GKE from one declarative file."""

__version__ = "0.1.0"
