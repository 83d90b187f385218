"""Labels and annotations every object of the kustomize engine carries; apply (prune) and drift select on them."""

INSTALL_LABEL = "spinboot.dev/install"  # value: the Spinnaker namespace name (one install per namespace)
PART_OF = ("app.kubernetes.io/part-of", "spinnaker")
COMPONENT = "app.kubernetes.io/component"  # value: the service (clouddriver, deck, ..., redis)
MANAGED_BY = ("app.kubernetes.io/managed-by", "spinboot")
CONFIG_HASH = "spinboot.dev/config-sha256"  # pod-template annotation: sha256 of that service's config files


def common_labels(namespace: str) -> dict[str, str]:
    """The labels on every object of one install (the overlay's ``labels`` sets them, generated ConfigMaps too)."""
    return {INSTALL_LABEL: namespace, PART_OF[0]: PART_OF[1], MANAGED_BY[0]: MANAGED_BY[1]}
