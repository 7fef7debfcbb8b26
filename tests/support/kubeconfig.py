"""A kubeconfig for an emulated API server (tests/fixtures/k8s.py): one cluster, one token user, one
context, as the planner, the agent and `verify` read it from ``--kubeconfig`` or the config file."""

from __future__ import annotations

from pathlib import Path

import yaml


def write_kubeconfig(path: Path, server_url: str, user: dict[str, object] | None = None) -> Path:
    """``user``: the kubeconfig user (default: a static token), e.g. an exec plugin (:data:`EXEC_PLUGIN`)."""
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "emu", "cluster": {"server": server_url}}],
                "users": [{"name": "emu", "user": user if user is not None else {"token": "test"}}],
                "contexts": [{"name": "emu", "context": {"cluster": "emu", "user": "emu"}}],
                "current-context": "emu",
            }
        ),
        encoding="utf-8",
    )
    return path


# An exec credential plugin (client.authentication.k8s.io): prints an ExecCredential with the token in
# $PLUGIN_TOKEN (the kubeconfig's exec.env sets it), as aws/gke/kubelogin plugins print theirs.
EXEC_PLUGIN = """\
import json, os
print(json.dumps({"apiVersion": "client.authentication.k8s.io/v1beta1", "kind": "ExecCredential",
                  "status": {"token": os.environ["PLUGIN_TOKEN"]}}))
"""
