"""Spinnaker's side of the sandbox: what Spinnaker's services do at startup, played with their own identity.

- config.py: the play's input, each service's configuration as the service reads it (engine-independent; the
  Halyard adapter is spinboot/sandbox/hal/profiles.py);
- play.py: front50, echo and clouddriver's startup calls; refusals name the service and the call; the pods of a
  refused service are reported crash-looping;
- sandboxenv.py: where the Google stand-ins are and each pod's Google (metadata server) and Kubernetes identity;
- toolset.py: run a command in an image's environment (halconfig/images.yaml: the tools each image holds);
- docker.py: a docker-registry account's password and tags, as Halyard and clouddriver get them.
"""
