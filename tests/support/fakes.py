"""Fakes of the ports that leave the process: what a domain published, instead of the bus."""

from __future__ import annotations

from typing import Any

from ems.core.events import DomainEvent, PublishOutcome


class ListPublisher:
    """An EventPublisher that keeps what it is given."""

    def __init__(self) -> None:
        self.events: list[DomainEvent] = []

    def publish(self, events: Any) -> PublishOutcome:
        self.events.extend(events)
        return PublishOutcome(sent=len(events))

    def kinds(self) -> list[str]:
        return [e.detail_type for e in self.events]
