"""A YAML file (JSON is YAML too) read into a pydantic model, or an error
whose message names the file and each field that is wrong."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


def load_model(path: Path, model: type[M], what: str, error: type[Exception]) -> M:
    """``path`` as a ``model``; ``error`` says what is wrong, naming it ``what``."""
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise error(f"{what} {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise error(f"{what} {path} is not valid YAML (nor JSON): {exc}") from None
    try:
        return model.model_validate(data or {})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in e['loc']) or '(top level)'}: {e['msg']}"
            for e in exc.errors()
        )
        raise error(f"{what} {path}: {problems}") from None
