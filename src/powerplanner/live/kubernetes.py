"""Moved: the actuator is live/actuator.py, the DGD reader kube/dgd.py, the pod watch live/pod_watch.py, the
client builder live/kube_client.py, the errors kube/errors.py. This module keeps the one name that
tests/integration/e2e imports (a file another change owns) until that import is updated; import from the new
modules."""

from powerplanner.live.actuator import cap_annotation_value

__all__ = ["cap_annotation_value"]
