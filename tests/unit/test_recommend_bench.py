"""The recommendation quality bench on a small deterministic sample: the
taste vector must predict the synthetic shoppers' next product better than
popularity, since their hidden taste is what drives them."""

from __future__ import annotations

from bench.recommend import hashed_words, score, synthetic, vectors_for


def test_the_taste_vector_beats_most_popular_on_the_synthetic_shoppers() -> None:
    dataset = synthetic(users=40, sessions=8, seed=3)
    scores = score(dataset, vectors_for(dataset, hashed_words))
    assert scores["predictions"]["n"] >= 200
    assert scores["taste"]["hit3"] > 1.3 * scores["popular"]["hit3"]
    assert scores["taste"]["mrr"] > scores["popular"]["mrr"]
    assert scores == score(dataset, vectors_for(dataset, hashed_words))  # deterministic


def test_hashed_words_make_texts_that_share_words_alike() -> None:
    shoes, socks, kit = hashed_words(["trail running shoes", "running socks", "cold brew kit"])
    assert shoes @ socks > 0.2 > abs(shoes @ kit)
