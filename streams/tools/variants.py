"""Prompt variants for `kairos eval`: the shipped ones, and ones from a file.

The shipped variants are models/prompts.py's ``VARIANTS`` (``a``, ``b``): the
moment types' prompts with a different closing line of the brief, assigned
per person and moment type (``variant`` on a moment and an offer). A variant
file declares one more, to try a prompt before it ships, in YAML or JSON:

    name: terse                 # how eval names it (letters, digits, . _ -)
    base: a                     # the shipped variant it starts from (a)
    model: other-model          # the model to ask (default: each --model)
    system: "You write ..."     # replaces the brief of every moment type
    system_suffix: " Be brief." # appended to the brief
    examples:                   # replaces the worked examples, in order
      - user: "Customer data: {...} ..."
        assistant: {"headline": "...", "message": "...", "product_id": "p-101"}
    moment_types:               # for one moment type, what it sets wins
      store_entry:
        system_suffix: " Name the store."

Everything else is the shipped prompt: the facts, the task sentence and the
JSON schema vLLM holds the answer to, so a variant changes only what it says.
A bad file stops eval with the file and the field named.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator

from agents.moment_types import MOMENT_TYPES, prompt_for
from models.context import ContextSlice
from models.prompts import VARIANTS, Prompt
from streams.errors import CommandError
from streams.yamlfile import load_model


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Example(_Strict):
    """One worked example: the question, and the answer the model is shown giving."""

    user: str = Field(min_length=1)
    assistant: dict[str, Any] | str


class Overrides(_Strict):
    system: str | None = Field(default=None, min_length=1)
    system_suffix: str | None = None
    examples: tuple[Example, ...] | None = None


class VariantFile(Overrides):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,40}$")
    base: str = "a"
    model: str | None = Field(default=None, min_length=1)
    moment_types: dict[str, Overrides] = {}

    @field_validator("base")
    @classmethod
    def _shipped(cls, value: str) -> str:
        if value not in VARIANTS:
            raise ValueError(f"unknown variant {value!r}; shipped: {', '.join(sorted(VARIANTS))}")
        return value

    @field_validator("moment_types")
    @classmethod
    def _known(cls, value: dict[str, Overrides]) -> dict[str, Overrides]:
        unknown = sorted(set(value) - set(MOMENT_TYPES))
        if unknown:
            raise ValueError(f"unknown moment types {unknown}; known: {sorted(MOMENT_TYPES)}")
        return value


@dataclass(frozen=True)
class Variant:
    """A prompt variant eval can run: a shipped one, or one from a file."""

    name: str
    base: str
    model: str | None = None  # None: every model eval was given
    every: Overrides = field(default_factory=Overrides)
    by_type: dict[str, Overrides] = field(default_factory=dict)
    source: str = "shipped"

    def prompt(self, moment_type: str, context: ContextSlice, _assigned: str) -> Prompt:
        """The prompt this variant sends (the moment's own variant is ignored)."""
        overrides = self.every
        if (own := self.by_type.get(moment_type)) is not None:  # what it sets wins
            overrides = overrides.model_copy(
                update={f: getattr(own, f) for f in own.model_fields_set}
            )
        return replace(_apply(prompt_for(moment_type, context, self.base), overrides),
                       variant=self.name)  # fmt: skip


def _apply(prompt: Prompt, overrides: Overrides) -> Prompt:
    system, *turns, task = prompt.messages
    content = overrides.system if overrides.system is not None else system["content"]
    content += overrides.system_suffix or ""
    if overrides.examples is not None:
        turns = []
        for example in overrides.examples:
            answer = example.assistant
            text = answer if isinstance(answer, str) else orjson.dumps(answer).decode()
            turns += [{"role": "user", "content": example.user},
                      {"role": "assistant", "content": text}]  # fmt: skip
    return replace(prompt, messages=[dict(system, content=content), *turns, task])


def shipped(name: str) -> Variant:
    return Variant(name, name)


def load_variant_file(path: Path) -> Variant:
    declared = load_model(path, VariantFile, "variant file", CommandError)
    every = Overrides(system=declared.system, system_suffix=declared.system_suffix,
                      examples=declared.examples)  # fmt: skip
    return Variant(declared.name, declared.base, declared.model, every,
                   dict(declared.moment_types), str(path))  # fmt: skip


def choose(names: list[str], files: list[Path]) -> list[Variant]:
    """The variants to run: those ``names`` names (shipped or from ``files``), in
    that order; without names, every shipped variant, then each file's."""
    loaded = [load_variant_file(path) for path in files]
    by_name: dict[str, Variant] = {name: shipped(name) for name in sorted(VARIANTS)}
    for variant in loaded:
        if variant.name in by_name:
            where = by_name[variant.name].source
            raise CommandError(f"variant file {variant.source}: name {variant.name!r} is "
                               f"already taken ({where})")  # fmt: skip
        by_name[variant.name] = variant
    if not names:
        return list(by_name.values())
    unknown = [name for name in names if name not in by_name]
    if unknown:
        raise CommandError(
            f"--variant {unknown[0]!r}: no such variant; known: {', '.join(by_name)} "
            "(a new one needs --variant-file)"
        )
    return [by_name[name] for name in dict.fromkeys(names)]
