"""The environment variables' names: one prefix, one rule (streams/settings.py
declares the fields; streams/security.py names them in its messages)."""

from __future__ import annotations

from typing import Any

ENV_PREFIX = "KAIROS_"


def env_name(loc: tuple[Any, ...]) -> str:
    """The environment variable that sets the field at ``loc``."""
    return ENV_PREFIX + "__".join(str(part) for part in loc).upper()
