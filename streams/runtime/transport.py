"""Faust's Kafka transport, with an idempotent producer.

Faust turns idempotence on only in its ``exactly_once`` mode, which kairos
does not use (it has open bugs: faust issues 517, 323, 177). Every record
the worker's producer writes (profile changelog, moments, dead letters)
goes with ``acks=all`` and idempotence, so a retried produce after a lost
acknowledgement writes no duplicate and cannot reorder a partition.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import faust
from faust.transport.drivers import aiokafka as driver

DURABLE = {"acks": "all", "enable_idempotence": True}


class DurableProducer(driver.Producer):
    def _settings_extra(self) -> Mapping[str, Any]:
        return {**super()._settings_extra(), **DURABLE}


class Transport(driver.Transport):
    Producer = DurableProducer


class App(faust.App):
    """A faust.App whose producer is idempotent with acks=all."""

    def _new_transport(self) -> Any:
        return Transport(self.conf.broker_consumer, self)
