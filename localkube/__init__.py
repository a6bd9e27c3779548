"""An in-process Kubernetes API server for tests and the demo (product code talks HTTP to it)."""

from localkube.server import LocalKube

__all__ = ["LocalKube"]
