"""kairos's error tree: every error kairos raises on purpose is a KairosError.

Each carries a message a person can read; the ones that become data (a
dead letter, a fallback offer, a metric label) also carry a short ``code``.
Errors of the libraries underneath are mapped onto these where they cross
into kairos (streams/runtime/admin.py: a broker that does not answer is
``BrokerUnavailable``), so a caller catches kairos's names, not aiokafka's.

The LLM layer's own tree (models/client.py: ``LLMError`` and its reasons),
the guardrails' ``Rejected``, the rules' ``RulesError`` and the offers
stage's ``GenerationFailed`` and ``PartitionLost`` hang from this base too.
The ones that were ``ValueError``\\s stay so, for callers that catch those.
"""

from __future__ import annotations


class KairosError(Exception):
    """Base of every error kairos raises on purpose."""

    code = "error"


class SettingsError(KairosError):
    """A setting is missing or invalid; the message names the variable."""

    code = "settings"


class CommandError(KairosError):
    """A command cannot do its job; the message says why."""

    code = "command"


class BrokerUnavailable(KairosError):
    """The Kafka bootstrap servers did not answer."""

    code = "broker_unavailable"


class BrokerError(KairosError):
    """The embedded broker cannot start; the message says what is missing."""

    code = "broker"


class ProcessFailed(KairosError):
    """A child process exited or did not become ready in time."""

    code = "process_failed"


class DeliveryFailed(KairosError):
    """An event's output could not be delivered; the worker must restart."""

    code = "delivery_failed"


class InvalidEvent(KairosError, ValueError):
    """An event kairos cannot take, with a short code and a readable reason."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class ReferenceDataError(KairosError, ValueError):
    """A reference file or update (stores, products) is missing or malformed."""

    code = "bad_reference"
