"""The environment variables' names: one prefix, one rule (streams/settings.py
declares the fields; streams/security.py names them in its messages), and the
messages for variables that are unknown or invalid."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

ENV_PREFIX = "KAIROS_"


def env_name(loc: tuple[Any, ...]) -> str:
    """The environment variable that sets the field at ``loc``."""
    return ENV_PREFIX + "__".join(str(part) for part in loc).upper()


def _known_variables(model: type[BaseModel], extra: Collection[str]) -> set[str]:
    names = set(extra)
    for field, info in model.model_fields.items():
        names.add(env_name((field,)))
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            names.update(env_name((field, sub)) for sub in info.annotation.model_fields)
    return names


def unknown_variables(
    model: type[BaseModel], environ: Mapping[str, str], extra: Collection[str]
) -> list[str]:
    """KAIROS_* variables in ``environ`` that set no field of ``model`` and are
    not in ``extra``: almost always a typo."""
    known = _known_variables(model, extra)
    return sorted(n for n in environ if n.startswith(ENV_PREFIX) and n not in known)


# What Kubernetes puts in every container for each Service of the namespace
# (enableServiceLinks): the Service kairos-api sets KAIROS_API_SERVICE_HOST,
# KAIROS_API_SERVICE_PORT[_<port name>], KAIROS_API_PORT=tcp://ip:port and
# KAIROS_API_PORT_<port>_TCP[_PROTO|_PORT|_ADDR].
_SERVICE_LINK = re.compile(
    r"^(?P<service>[A-Z0-9_]+?)_(?:SERVICE_HOST|SERVICE_PORT(?:_[A-Z0-9_]+)?"
    r"|PORT(?:_\d+_(?:TCP|UDP|SCTP)(?:_(?:PROTO|PORT|ADDR))?)?)$"
)


def unknown_lines(unknown: list[str]) -> list[str]:
    """One line per unknown name, and how to stop Kubernetes' service links
    if some look like them; they stay errors all the same."""
    lines = []
    for name in unknown:
        link = _SERVICE_LINK.match(name)
        service = link["service"].lower().replace("_", "-") if link else ""
        hint = f" (a Kubernetes service link of the Service {service}?)" if link else ""
        lines.append(f"{name}: unknown setting{hint}")
    if any(_SERVICE_LINK.match(name) for name in unknown):
        lines.append(
            "to keep service links out, set enableServiceLinks: false in the pod spec "
            "(as deploy/k8s/workers.yaml does)"
        )
    return lines


def describe(exc: ValidationError, secrets: Collection[str]) -> str:
    """The validation errors, a line each, naming the variable; the value is
    shown unless it is a secret's (in ``secrets``) or already in the message."""
    lines = []
    for error in exc.errors():
        name = env_name(tuple(error["loc"]))
        if not error["loc"]:  # a check across settings names them itself
            lines.append(error["msg"].removeprefix("Value error, "))
            continue
        if error["type"] == "extra_forbidden":
            lines.append(f"{name}: unknown setting")
            continue
        value = error.get("input")
        message = error["msg"].removeprefix("Value error, ")
        hidden = isinstance(value, dict) or name in secrets or repr(value) in message
        shown = "" if hidden else f" (got {value!r})"
        lines.append(f"{name}: {message}{shown}")
    return "invalid settings:\n  " + "\n  ".join(lines)
