"""The platform layer: the one Kubernetes adapter, settings, logging, start-up checks and certificate reloading.

Above the pure model, below the processes (webhook, reconciler, certs).
"""
