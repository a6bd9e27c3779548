"""Flow sources netwarden subscribes to over gRPC: Hubble Relay (Observer.GetFlows) and Calico
Goldmane (Flows.List + Flows.Stream). `proto/` holds the subsets of the upstream .proto files (same
packages and field numbers) and the stubs generated from them (protogen.py); `records.py` turns
messages into the records netwarden/reconciler/signals/parse.py reads; `stream.py` keeps a subscription alive.
"""

from __future__ import annotations

import time
from typing import Any, Callable

#: On start-up, ask for the flows of the last minute the server still holds (Hubble's ring,
#: Goldmane's windows): a restarted reconciler loses little.
START_BACKFILL_SECONDS = 60


def start_flow_sources(settings: Any, sink: Any, counters: Any, *, active: Callable[[], bool] = lambda: True,
                       registry: Any = None) -> list[Any]:
    """Start the sources the reconciler settings name (netwarden.platform.config.ReconcilerConfig); their
    metrics go to `registry` (prometheus_client). Returns them, started; stop() each at shutdown."""
    if not (settings.hubble_relay_address or settings.goldmane_address):
        return []
    from netwarden.reconciler.sources.goldmane import GoldmaneSource
    from netwarden.reconciler.sources.hubble import HubbleRelaySource
    from netwarden.reconciler.sources.stream import StreamStatsCollector, TlsFiles

    def tls(folder: str | None, server_name: str | None) -> TlsFiles | None:
        return TlsFiles(folder, server_name or None) if folder else None

    common = {"counters": counters, "active": active, "buffer_size": settings.stream_buffer}
    sources: list[Any] = []
    if settings.hubble_relay_address:
        sources.append(HubbleRelaySource(
            settings.hubble_relay_address, sink, since=time.time() - START_BACKFILL_SECONDS,
            tls=tls(settings.hubble_relay_tls_dir, settings.hubble_relay_server_name), **common))
    if settings.goldmane_address:
        sources.append(GoldmaneSource(
            settings.goldmane_address, sink, backfill_seconds=START_BACKFILL_SECONDS,
            tls=tls(settings.goldmane_tls_dir, settings.goldmane_server_name), **common))
    if registry is not None:
        registry.register(StreamStatsCollector(lambda: [source.stats for source in sources]))
    for source in sources:
        source.start()
    return sources
