"""Where things live inside the Halyard pod. configure.sh and the apply stage (which copies the bundle and the
minted kubeconfigs into the pod) must agree on these, so they are defined once here.

Paths are relative to the Halyard user's home ($HOME, /home/spinnaker in the Halyard image), so the same script
runs in the real pod and in the sandbox's stand-in. Kubeconfigs live only under ~/.hal.
"""

HAL_DIR = "${HOME}/.hal"
SPINBOOT_DIR = HAL_DIR + "/spinboot"           # spinboot's own records inside Halyard's volume
KUBECONFIG_DIR = SPINBOOT_DIR + "/kubeconfigs"  # minted target kubeconfigs, mode 0600
PROFILES_DIR = HAL_DIR + "/default/profiles"
SERVICE_SETTINGS_DIR = HAL_DIR + "/default/service-settings"
SECRETS_DIR = "/home/spinnaker/secrets"          # Secrets the Halyard StatefulSet mounts (e.g. GitHub tokens)
HAL_HOME = "/home/spinnaker"


def kubeconfig_file(target_name: str) -> str:
    """File name of a target's kubeconfig inside KUBECONFIG_DIR."""
    return f"{target_name}.kubeconfig"


def kubeconfig_context(target_name: str) -> str:
    """The single context in a minted kubeconfig is named after the target (its Spinnaker account)."""
    return target_name
