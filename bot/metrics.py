"""What `GET /metrics` reports, in the Prometheus text exposition format (version 0.0.4), written by hand.

Two kinds of figures:
- **From the database**, the same in every process: deliveries by ritual and status, and how many are
  still pending. Scrape any process (or all: take `max`, not `sum`).
- **Of this process**: how long Slack and Teams requests took to be answered (the ack latency Slack
  holds to 3 seconds), how many HTTP 429s the platforms answered this process's calls with, how many
  commands the per-user limit refused, and when the process started. Sum these over processes.

A `Metrics` object is made per process by the app factory and handed to what feeds it (the web server's
timing middleware, the chat clients' 429 hooks, the command limit); there is no module-level registry.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from storage.delivery_stats import PENDING, DeliveryCount

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0)
"""Seconds; 3.0 is Slack's ack deadline, so `le="3.0"` against `+Inf` shows the requests Slack gave up on."""


@dataclass
class Histogram:
    buckets: tuple[float, ...] = LATENCY_BUCKETS
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * len(self.buckets)

    def observe(self, value: float) -> None:
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1
        self.total += value
        self.count += 1


@dataclass
class Metrics:
    """This process's counters; `exposition` adds the database's figures."""

    started_at: float = field(default_factory=time.time)
    latency: dict[str, Histogram] = field(default_factory=dict)
    rate_limited: dict[str, int] = field(default_factory=dict)
    commands_refused: dict[str, int] = field(default_factory=dict)

    def observe_request(self, platform: str, seconds: float) -> None:
        self.latency.setdefault(platform, Histogram()).observe(seconds)

    def count_rate_limited(self, platform: str) -> None:
        """A platform answered one of our API calls with HTTP 429."""
        self.rate_limited[platform] = self.rate_limited.get(platform, 0) + 1

    def rate_limit_hook(self, platform: str) -> Callable[[], None]:
        """The 429 hook a chat client of `platform` calls."""
        return lambda: self.count_rate_limited(platform)

    def count_command_refused(self, platform: str) -> None:
        self.commands_refused[platform] = self.commands_refused.get(platform, 0) + 1

    def exposition(self, deliveries: Sequence[DeliveryCount] | None) -> str:
        """The text for a scrape; `deliveries` None when the database did not answer."""
        out: list[str] = []
        up = deliveries is not None
        _family(out, "cadence_database_up", "gauge", "1 when the database answered this scrape.", [({}, int(up))])
        if deliveries is not None:
            _family(
                out,
                "cadence_deliveries",
                "gauge",
                "Deliveries in the database by ritual and status (sent, failed, skipped, pending, sending).",
                [({"ritual": d.ritual, "status": d.status}, d.count) for d in deliveries],
            )
            pending = sum(d.count for d in deliveries if d.status in PENDING)
            help_text = "Deliveries not yet sent, failed or skipped."
            _family(out, "cadence_deliveries_pending", "gauge", help_text, [({}, pending)])
        _family(
            out,
            "cadence_platform_rate_limited_total",
            "counter",
            "HTTP 429 answers this process received from a chat platform's API.",
            [({"platform": p}, n) for p, n in sorted(self.rate_limited.items())],
        )
        _family(
            out,
            "cadence_commands_refused_total",
            "counter",
            "Commands this process refused because a person was over the per-user rate limit.",
            [({"platform": p}, n) for p, n in sorted(self.commands_refused.items())],
        )
        out.append("# HELP cadence_request_duration_seconds Time to answer a Slack or Teams request (the ack).")
        out.append("# TYPE cadence_request_duration_seconds histogram")
        for platform, hist in sorted(self.latency.items()):
            for bound, n in zip(hist.buckets, hist.counts, strict=True):
                out.append(
                    _sample("cadence_request_duration_seconds_bucket", {"platform": platform, "le": str(bound)}, n)
                )
            out.append(
                _sample("cadence_request_duration_seconds_bucket", {"platform": platform, "le": "+Inf"}, hist.count)
            )
            out.append(_sample("cadence_request_duration_seconds_sum", {"platform": platform}, hist.total))
            out.append(_sample("cadence_request_duration_seconds_count", {"platform": platform}, hist.count))
        _family(
            out,
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since the Unix epoch.",
            [({}, self.started_at)],
        )
        return "\n".join(out) + "\n"


def _family(
    out: list[str], name: str, kind: str, help_text: str, samples: Iterable[tuple[Mapping[str, str], float]]
) -> None:
    out.append(f"# HELP {name} {help_text}")
    out.append(f"# TYPE {name} {kind}")
    out.extend(_sample(name, labels, value) for labels, value in samples)


def _sample(name: str, labels: Mapping[str, str], value: float) -> str:
    rendered = ",".join(f'{key}="{_label(val)}"' for key, val in labels.items())
    number = repr(float(value)) if isinstance(value, float) else str(value)
    return f"{name}{{{rendered}}} {number}" if rendered else f"{name} {number}"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
