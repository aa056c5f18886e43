"""The ingress's Prometheus metrics (one registry per app instance).

- ``chatmill_webhook_requests_total{outcome}``: POSTs by outcome: accepted, bad_signature,
  bad_request, too_large, unknown_channel, db_unavailable.
- ``chatmill_webhook_messages_total{outcome}``: inbound messages: accepted, duplicate,
  unknown_number, rate_limited, malformed.
- ``chatmill_webhook_statuses_total{outcome}``: statuses: applied, unmatched (kept for later),
  unknown_number.
- ``chatmill_webhook_errors_total{code}``: change-level errors Meta reported.
- ``chatmill_webhook_ack_seconds``: time from request to response (all outcomes).
- ``chatmill_outbox_backlog`` / ``chatmill_outbox_oldest_age_seconds``: undispatched outbox rows.
- ``chatmill_outbox_dispatched_total``, ``chatmill_outbox_dispatch_errors_total{kind}``,
  ``chatmill_outbox_redispatched_stuck_total`` (messages whose run was lost, dispatched again).
- ``chatmill_handle_message_failures``: messages whose flow failed (failure module) in the last 24 h.
- ``chatmill_windmill_queue_depth``: Windmill's queue length (when Windmill is configured).
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclass(frozen=True)
class IngressMetrics:
    requests: Counter
    messages: Counter
    statuses: Counter
    meta_errors: Counter
    ack_seconds: Histogram
    outbox_backlog: Gauge
    outbox_oldest_age: Gauge
    dispatched: Counter
    dispatch_errors: Counter
    redispatched_stuck: Counter
    failed_runs: Gauge
    windmill_queue_depth: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry) -> IngressMetrics:
        return cls(
            requests=Counter(
                "chatmill_webhook_requests_total", "Webhook POSTs by outcome", ["outcome"], registry=registry
            ),
            messages=Counter(
                "chatmill_webhook_messages_total",
                "Inbound messages by outcome",
                ["outcome"],
                registry=registry,
            ),
            statuses=Counter(
                "chatmill_webhook_statuses_total", "Status updates by outcome", ["outcome"], registry=registry
            ),
            meta_errors=Counter(
                "chatmill_webhook_errors_total",
                "Errors Meta reported in webhooks",
                ["code"],
                registry=registry,
            ),
            ack_seconds=Histogram(
                "chatmill_webhook_ack_seconds",
                "Time to answer a webhook POST",
                buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
                registry=registry,
            ),
            outbox_backlog=Gauge("chatmill_outbox_backlog", "Undispatched outbox rows", registry=registry),
            outbox_oldest_age=Gauge(
                "chatmill_outbox_oldest_age_seconds",
                "Age of the oldest undispatched outbox row",
                registry=registry,
            ),
            dispatched=Counter(
                "chatmill_outbox_dispatched_total", "Outbox rows dispatched", registry=registry
            ),
            dispatch_errors=Counter(
                "chatmill_outbox_dispatch_errors_total",
                "Failed dispatch attempts",
                ["kind"],
                registry=registry,
            ),
            redispatched_stuck=Counter(
                "chatmill_outbox_redispatched_stuck_total",
                "Messages dispatched again because their run was lost",
                registry=registry,
            ),
            failed_runs=Gauge(
                "chatmill_handle_message_failures",
                "Messages whose handle_message run failed (the failure module ran), in the last 24 h",
                registry=registry,
            ),
            windmill_queue_depth=Gauge(
                "chatmill_windmill_queue_depth", "Jobs waiting in Windmill's queue", registry=registry
            ),
        )
