"""Prometheus metrics, one registry per app."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from batchd.domain.models import Outcome


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.claimed = Counter(
            "batchd_items_claimed", "Items claimed by this process's worker",
            registry=self.registry,
        )
        self.finished = Counter(
            "batchd_items_finished", "Item attempts finished, by outcome", ["status"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "batchd_item_seconds", "Time to run one item attempt",
            buckets=(0.001, 0.005, 0.02, 0.1, 0.5, 2, 10, 60, 300), registry=self.registry,
        )
        self.records = Counter(
            "batchd_records_finished", "Records finished by this process's worker",
            ["status"], registry=self.registry,
        )

        # Labelled children, looked up once: labels() costs more than the increment, and
        # observe runs for every item.
        self._finished_by: dict[str, Counter] = {}
        self._records_ok = self.records.labels("succeeded")
        self._records_failed = self.records.labels("failed")

    def observe(self, outcome: Outcome, seconds: float) -> None:
        finished = self._finished_by.get(outcome.status)
        if finished is None:
            finished = self._finished_by[outcome.status] = self.finished.labels(outcome.status)
        finished.inc()
        self.duration.observe(seconds)
        if outcome.records_succeeded:
            self._records_ok.inc(outcome.records_succeeded)
        if outcome.records_failed:
            self._records_failed.inc(outcome.records_failed)
