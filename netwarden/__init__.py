"""netwarden: adaptive network access control for Kubernetes (shared core and CLI)."""

__version__ = "0.1.0"
