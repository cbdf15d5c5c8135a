"""Combinations of the connection settings that cannot work, found at start-up.

Each check returns sentences naming the variables, for Settings to refuse
with: a client that would only fail later, at its first connection (or, as
with a SASL password given to a plaintext listener, silently ignore a
setting), is worse than a worker that does not start.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from streams.env import env_name

# Each check takes a streams.settings.Settings, which calls them while it
# validates: typed Any here, as this module cannot import the one importing it.
Settings = Any

TLS_PROTOCOLS = frozenset({"SSL", "SASL_SSL"})
SASL_PROTOCOLS = frozenset({"SASL_PLAINTEXT", "SASL_SSL"})


def _name(field: str) -> str:
    return env_name((field,))


def kafka_problems(settings: Settings) -> list[str]:
    """What is wrong with the Kafka security settings, one sentence each."""
    protocol = settings.kafka_security_protocol
    given = f"{_name('kafka_security_protocol')}={protocol}"
    problems: list[str] = []
    sasl = ("kafka_sasl_mechanism", "kafka_sasl_username", "kafka_sasl_password")
    if protocol in SASL_PROTOCOLS:
        missing = [_name(f) for f in sasl if getattr(settings, f) is None]
        if missing:
            problems.append(f"{given} needs " + ", ".join(missing))
    else:
        extra = [_name(f) for f in sasl if getattr(settings, f) is not None]
        if extra:
            problems.append(f"{', '.join(extra)} set, but {given} does not use SASL")
    tls = ("kafka_ca_file", "kafka_cert_file", "kafka_key_file")
    if protocol not in TLS_PROTOCOLS:
        extra = [_name(f) for f in tls if getattr(settings, f) is not None]
        if not settings.kafka_check_hostname:
            extra.append(_name("kafka_check_hostname"))
        if extra:
            problems.append(f"{', '.join(extra)} set, but {given} does not use TLS")
    if (settings.kafka_cert_file is None) != (settings.kafka_key_file is None):
        problems.append(
            f"{_name('kafka_cert_file')} and {_name('kafka_key_file')} go together "
            "(a client certificate and its private key, for mutual TLS)"
        )
    problems += [p for p in (_unreadable(f, getattr(settings, f)) for f in tls) if p]
    if protocol != "PLAINTEXT" and settings.embedded_broker:
        problems.append(
            f"{given} needs {_name('broker_url')}: the embedded broker listens in plaintext"
        )
    return problems


def llm_problems(settings: Settings) -> list[str]:
    """What is wrong with the LLM endpoint's TLS settings."""
    if settings.llm_ca_file is None:
        return []
    if not settings.llm_base_url.startswith("https://"):
        return [
            f"{_name('llm_ca_file')} set, but {_name('llm_url')}="
            f"{settings.llm_url or '(unset: the embedded server)'} is not an https URL"
        ]
    problem = _unreadable("llm_ca_file", settings.llm_ca_file)
    return [problem] if problem else []


def _unreadable(field: str, path: Path | None) -> str:
    if path is None:
        return ""
    if not path.is_file():
        return f"{_name(field)}={str(path)!r}: no such file"
    if not os.access(path, os.R_OK):
        return f"{_name(field)}={str(path)!r}: this user cannot read it"
    return ""
