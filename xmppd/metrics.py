"""``/metrics``: the node's figures in the Prometheus text format (prometheus_client).

The hot path only adds to plain integers (a dict item per stanza kind, a bucket of a latency
histogram found by ``bisect``): nothing is allocated per stanza and no lock is taken. The
figures become Prometheus metric families when ``/metrics`` is read, in a registry of this
server's own (no process-global state); features add what they know (archive queue depth,
red-packet totals, customer-service chats) with ``ctx.add_metrics(collect)``, a function called
at each scrape that returns metric families.
"""
from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

if TYPE_CHECKING:
    from .app import Server

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Upper bounds (seconds) of the latency histograms: 50 µs .. 5 s.
LATENCY_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

perf_counter = time.perf_counter


class Histogram:
    """Counts per bucket and a sum; ``observe`` is one bisect and two additions."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def buckets(self) -> list[tuple[str, float]]:
        out, total = [], 0
        for bound, n in zip((*map(str, self.bounds), "+Inf"), self.counts, strict=True):
            total += n
            out.append((bound, total))
        return out


class Metrics:
    """The figures one node keeps, and its ``/metrics`` page."""

    def __init__(self, server: "Server") -> None:
        self.server = server
        self.stanzas_in: dict[str, int] = {"message": 0, "presence": 0, "iq": 0}
        self.stanzas_out: dict[str, int] = {"message": 0, "presence": 0, "iq": 0}
        self.auth_failures: dict[str, int] = {}
        self.routing = Histogram()  # a client stanza from its arrival at the router to routed
        self.storage = Histogram()  # one storage transaction (Database.run_txn / read_txn)
        self.api_requests: dict[tuple[str, int], int] = {}
        self._collectors: list[Callable[[], Iterable[Metric]]] = []
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)  # type: ignore[arg-type]

    # -- the hot path
    def stanza_in(self, kind: str) -> None:
        d = self.stanzas_in
        d[kind] = d.get(kind, 0) + 1

    def stanza_out(self, kind: str) -> None:
        d = self.stanzas_out
        d[kind] = d.get(kind, 0) + 1

    def auth_failure(self, reason: str) -> None:
        self.auth_failures[reason] = self.auth_failures.get(reason, 0) + 1

    # -- features
    def add(self, collect: Callable[[], Iterable[Metric]]) -> Callable[[], None]:
        """Call ``collect()`` at every scrape; returns the removal."""
        self._collectors.append(collect)
        return lambda: self._collectors.remove(collect) if collect in self._collectors else None  # type: ignore[func-returns-value]

    # -- the scrape
    def collect(self) -> Iterator[Metric]:
        by_transport = {"tcp": 0, "websocket": 0}
        for s in list(self.server.live):
            if s.jid is not None and not s.is_closed:
                by_transport["websocket" if s.websocket else "tcp"] += 1
        g = GaugeMetricFamily("xmppd_sessions", "Bound client sessions on this node, by transport", labels=["transport"])
        for transport, n in by_transport.items():
            g.add_metric([transport], n)
        yield g
        for name, doc, data in (
            ("xmppd_stanzas_in", "Stanzas received from clients, by kind", self.stanzas_in),
            ("xmppd_stanzas_out", "Stanzas delivered to sessions, by kind", self.stanzas_out),
        ):
            c = CounterMetricFamily(name, doc, labels=["kind"])
            for kind, n in sorted(data.items()):
                c.add_metric([kind], n)
            yield c
        c = CounterMetricFamily("xmppd_auth_failures", "Failed SASL authentications, by reason", labels=["reason"])
        for reason, n in sorted(self.auth_failures.items()):
            c.add_metric([reason], n)
        yield c
        for name, doc, h in (
            ("xmppd_routing_seconds", "Time to route a client stanza (hooks and delivery, storage writes included)", self.routing),
            ("xmppd_storage_seconds", "Time of one storage transaction", self.storage),
        ):
            hist = HistogramMetricFamily(name, doc)
            hist.add_metric([], h.buckets(), h.sum)
            yield hist
        c = CounterMetricFamily("xmppd_api_requests", "REST API requests, by method and status", labels=["method", "status"])
        for (method, status), n in sorted(self.api_requests.items()):
            c.add_metric([method, str(status)], n)
        yield c
        for collect in list(self._collectors):
            yield from collect()

    def render(self) -> bytes:
        return generate_latest(self.registry)


def gauge(name: str, doc: str, value: float, labels: dict[str, str] | None = None) -> Metric:
    """A one-sample gauge family (for features' collectors)."""
    g = GaugeMetricFamily(name, doc, labels=list(labels) if labels else None)
    if labels:
        g.add_metric(list(labels.values()), value)
    else:
        g.add_metric([], value)
    return g


def labelled(kind: Any, name: str, doc: str, label: str, values: dict[str, float]) -> Metric:
    """A family (``CounterMetricFamily`` or ``GaugeMetricFamily``) with one label."""
    fam = kind(name, doc, labels=[label])
    for key, value in sorted(values.items()):
        fam.add_metric([key], value)
    return fam
