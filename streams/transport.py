"""Faust's Kafka transport with one knob Faust does not expose: fetch wait.

Faust builds its aiokafka consumer with ``fetch_max_wait_ms=1500``. Kafka
answers a fetch as soon as data arrives, so that is harmless there; the
embedded broker holds every fetch for the full wait, which put ~360 ms (p50)
on each hop between agents. ``KAIROS_CONSUMER_FETCH_WAIT_MS`` sets it.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.transport.drivers import aiokafka as driver


def app_class(fetch_wait_ms: int) -> type[faust.App]:
    """A faust.App subclass whose consumers use ``fetch_wait_ms``."""

    class ConsumerThread(driver.AIOKafkaConsumerThread):
        def _create_worker_consumer(self, transport: Any) -> Any:
            consumer = super()._create_worker_consumer(transport)
            consumer._fetch_max_wait_ms = fetch_wait_ms
            return consumer

    class FetchWaitConsumer(driver.Consumer):
        def _new_consumer_thread(self) -> Any:
            return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    class Transport(driver.Transport):
        Consumer = FetchWaitConsumer

    class App(faust.App):
        def _new_transport(self) -> Any:
            return Transport(self.conf.broker_consumer, self)

    return App
