"""Store visits to evaluate, and a stand-in model whose answers follow the prompt.

The script answers like an obedient model: it greets the customer by the
``first_name`` in the prompt's customer data and names the first product the
schema allows. A brief asking for prices (:data:`PRICES`) makes it quote
one, which the guardrails reject; a brief asking it to leave the name out
(:data:`NO_NAME`) makes it greet nobody by name, which they let through.
So a variant's prompt alone decides how good its answers are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from tests.e2e.scenario import inside
from tests.support.fake_llm import Answer

PRICES = " Always quote the product's price in dollars."
NO_NAME = " Do not use the customer's name."
PRODUCTS = (("p-101", "running"), ("p-102", "running"))  # Flatiron carries running


def answer(request: dict[str, Any]) -> Answer:
    messages = request["messages"]
    system, task = messages[0]["content"], messages[-1]["content"]
    facts = orjson.loads(task.split("\n", 1)[0].removeprefix("Customer data: "))
    name = "there" if NO_NAME in system else facts.get("first_name", "friend")
    message = f"Hi {name}, come and try them on in store today."
    if PRICES in system:
        message = f"Hi {name}, they are yours for $99 in store today."
    schema = request["response_format"]["json_schema"]["schema"]
    headline = "Good to see you" if NO_NAME in system else f"{name}, good to see you"
    body = {"headline": headline, "message": message}
    if "product_id" in schema["properties"]:
        body["product_id"] = schema["properties"]["product_id"]["enum"][0]
    return Answer(content=orjson.dumps(body).decode())


def visits(users: list[str], at_ms: int) -> list[tuple[str, dict[str, Any]]]:
    """Each user is named, views two running products, then walks into Flatiron."""
    out: list[tuple[str, dict[str, Any]]] = []
    for user in users:
        out.append(("clickstream", {"type": "identify", "userId": user, "messageId": f"id-{user}",
                                    "traits": {"name": user.capitalize()},
                                    "timestamp": at_ms - 3_600_000}))  # fmt: skip
        for n, (product, category) in enumerate(PRODUCTS):
            out.append(("clickstream", {"type": "track", "event": "Product Viewed",
                                        "userId": user, "messageId": f"v{n}-{user}",
                                        "timestamp": at_ms - 60_000 + n,
                                        "properties": {"product_id": product,
                                                       "category": category}}))  # fmt: skip
        out.append(("location", {**inside(user, f"ping-{user}", ""), "timestamp": at_ms}))
    return out


def renamed(users: list[str], at_ms: int) -> list[tuple[str, dict[str, Any]]]:
    """Later, everyone changes their name: a point-in-time eval must not see it."""
    return [("clickstream", {"type": "identify", "userId": user, "messageId": f"re-{user}",
                             "traits": {"name": "Renamed"}, "timestamp": at_ms})
            for user in users]  # fmt: skip


def variant_files(folder: Path) -> tuple[Path, Path]:
    """Two variants known to be worse than the shipped ones: (prices, other name)."""
    prices, other = folder / "prices.yaml", folder / "no-name.json"
    prices.write_text(f"name: prices\nbase: a\nsystem_suffix: {PRICES!r}\n")
    other.write_text(orjson.dumps({"name": "no-name", "system_suffix": NO_NAME}).decode())
    return prices, other
