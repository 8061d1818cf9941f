"""Prometheus metrics of the reward service (``GET /metrics``).

Each app gets its own registry, so several services in one process (tests, benchmarks) do not share counters.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)


@dataclass(frozen=True)
class BatchMetrics:
    """What one coalescer reports: items per call, call time, queueing time, items in flight."""

    batch_items: Histogram
    engine_seconds: Histogram
    queue_seconds: Histogram
    pending_items: Gauge


class ServiceMetrics:
    """Requests, items, questions, batch sizes, latencies, errors and parse failures; the judge's apart."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter(
            "caprl_requests", "HTTP requests by endpoint and status code.", ["endpoint", "status"], registry=r
        )
        self.request_seconds = Histogram(
            "caprl_request_seconds", "Request latency by endpoint.", ["endpoint"], buckets=_LATENCY_BUCKETS, registry=r
        )
        self.items = Counter(
            "caprl_items", "Items (QA and judge) by outcome: scored, invalid (4xx) or failed (engine or judge error).",
            ["outcome"], registry=r,
        )  # fmt: skip
        self.questions = Counter("caprl_questions", "Questions put to the reader.", registry=r)
        self.batch_items = Histogram(
            "caprl_batch_items", "Items per engine call (after coalescing).", buckets=_BATCH_BUCKETS, registry=r
        )
        self.engine_seconds = Histogram(
            "caprl_engine_seconds", "Time of one engine call.", buckets=_LATENCY_BUCKETS, registry=r
        )
        self.queue_seconds = Histogram(
            "caprl_queue_seconds", "Time from admission to the start of the item's engine call.",
            buckets=_LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.errors = Counter(
            "caprl_errors",
            "Errors by kind: bad_json, invalid_request, invalid_item, too_large, overloaded, not_ready, "
            "unauthorized, engine, judge.",
            ["kind"],
            registry=r,
        )
        self.parse_failures = Counter(
            "caprl_parse_failures", "Reader answers with no option letter in them (generate path).", registry=r
        )
        self.pending_items = Gauge("caprl_pending_items", "Items admitted and not yet answered.", registry=r)
        self.ready = Gauge(
            "caprl_ready", "1 when every model (reader, judge) is loaded and the service takes work.", registry=r
        )
        self.qa_batches = BatchMetrics(self.batch_items, self.engine_seconds, self.queue_seconds, self.pending_items)

        # The VLM judge (servers started with --judge).
        self.judge_items = Counter(
            "caprl_judge_items", "Judge items by outcome: scored, invalid (4xx: request or media) or failed (the "
            "judge gave no valid scores, or its call failed).", ["outcome"], registry=r,
        )  # fmt: skip
        self.judge_parse_failures = Counter(
            "caprl_judge_parse_failures",
            "Judge answers without valid scores (each rejected attempt, also those a retry made good).",
            registry=r,
        )
        self.judge_batches = BatchMetrics(
            Histogram(
                "caprl_judge_batch_items", "Judge items per judge call (after coalescing).", buckets=_BATCH_BUCKETS,
                registry=r,
            ),
            Histogram(
                "caprl_judge_seconds", "Time of one judge call (media decoding included).", buckets=_LATENCY_BUCKETS,
                registry=r,
            ),
            Histogram(
                "caprl_judge_queue_seconds", "Time from admission to the start of the judge item's call.",
                buckets=_LATENCY_BUCKETS, registry=r,
            ),
            Gauge("caprl_judge_pending_items", "Judge items admitted and not yet answered.", registry=r),
        )  # fmt: skip

    def render(self) -> bytes:
        return generate_latest(self.registry)
