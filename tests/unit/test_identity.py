"""Ingest routing plus the context fold, without a broker: identity merges and dedupe.

The harness does what Kafka does between the two stages: records go through
the ingest router, bundles and forwarded events are delivered partition by
partition, and profiles are stored as the bytes the table would hold.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from agents.fold import MAX_HOPS, Fold
from agents.profile import PROFILE_VERSION
from streams.codecs import loads
from tests.support.harness import T0, Harness, policy


def view(n: int, product: str = "p-101", **ids: str) -> tuple[str, dict[str, Any]]:
    return "clickstream", {
        "type": "track",
        "event": "Product Viewed",
        "messageId": f"v{n}",
        "timestamp": T0 + n,
        "properties": {"product_id": product},
        **ids,
    }


def identify(n: int, **ids: str) -> tuple[str, dict[str, Any]]:
    return "clickstream", {
        "type": "identify",
        "messageId": f"i{n}",
        "timestamp": T0 + n,
        "traits": {"first_name": "Alice"},
        **ids,
    }


def test_late_identify_brings_anonymous_history_to_the_user() -> None:
    h = Harness()
    h.send(*(view(n, f"p-10{n}", anonymousId="a1") for n in range(3)))
    assert h.profile("a1")["n"] == 3
    h.send(identify(10, anonymousId="a1", userId="u1"))
    h.send(view(11, "p-109", userId="u1"))
    user = h.profile("u1")
    assert user["n"] == 5  # three anonymous views, the identify, one view as u1
    assert [v[1] for v in user["views"]] == ["p-100", "p-101", "p-102", "p-109"]
    assert user["traits"]["first_name"][0] == "Alice"
    assert user["ids"] == ["a1"]
    stub = {"v": PROFILE_VERSION, "user": "a1", "merged_into": "u1", "updated": T0 + 10}
    assert h.profile("a1") == stub
    assert h.merges == {"merged": 1}


def test_events_for_the_old_id_after_a_merge_reach_the_user() -> None:
    h = Harness()
    h.send(identify(1, anonymousId="a1", userId="u1"))
    h.send(
        view(2, anonymousId="a1"),
        (
            "location",
            {"anonymousId": "a1", "lat": 1.0, "lon": 2.0, "timestamp": T0 + 3, "messageId": "p3"},
        ),
    )
    assert h.profile("u1")["n"] == 3
    assert h.profile("a1").get("n") is None


def test_alias_merges_the_previous_id() -> None:
    h = Harness()
    h.send(view(1, userId="old-crm-id"), view(2, userId="old-crm-id"))
    h.send(
        (
            "clickstream",
            {
                "type": "alias",
                "previousId": "old-crm-id",
                "userId": "u1",
                "timestamp": T0 + 3,
                "messageId": "al",
            },
        )
    )
    assert h.profile("u1")["n"] == 3 and h.profile("u1")["ids"] == ["old-crm-id"]
    assert h.profile("old-crm-id")["merged_into"] == "u1"


def test_duplicates_are_applied_once_even_across_a_merge() -> None:
    h = Harness()
    h.send(view(1, anonymousId="a1"), view(1, anonymousId="a1"))
    h.send(identify(2, anonymousId="a1", userId="u1"))
    h.send(view(1, anonymousId="a1"), view(1, userId="u1", anonymousId="a1"))  # resent later
    assert h.profile("u1")["n"] == 2
    assert h.duplicates == 3


def test_a_redelivered_batch_changes_nothing() -> None:
    h = Harness()
    no_ids = [
        ("clickstream", {"type": "page", "userId": "u1", "timestamp": T0 + n}) for n in range(4)
    ]
    records = [h.record(source, body) for source, body in no_ids]
    h.deliver(records)
    before = h.store["u1"]
    h.deliver(records)  # same offsets: ingest crashed before committing
    assert h.store["u1"] == before and h.duplicates == 4


def test_ids_merged_into_each_other_end_in_one_profile() -> None:
    h = Harness()
    h.send(view(1, anonymousId="a1"), view(2, userId="u1"))
    h.send(identify(3, anonymousId="a1", userId="u1"))
    h.send(
        (
            "clickstream",
            {
                "type": "alias",
                "previousId": "u1",
                "userId": "a1",
                "timestamp": T0 + 4,
                "messageId": "al",
            },
        )
    )
    h.send(view(5, anonymousId="a1"), view(6, userId="u1"))
    profiles = {k: loads(v) for k, v in h.store.items()}
    canonical = [p for p in profiles.values() if "merged_into" not in p]
    assert len(canonical) == 1 and canonical[0]["n"] == 6
    assert not h.dead


def test_a_second_merge_of_the_same_id_elsewhere_is_a_conflict() -> None:
    h = Harness()
    h.send(identify(1, anonymousId="shared-tablet", userId="u1"))
    h.send(identify(2, anonymousId="shared-tablet", userId="u2"))
    assert h.profile("shared-tablet")["merged_into"] == "u1"
    assert h.merges["conflict"] == 1


def test_an_endless_forward_is_dead_lettered() -> None:
    fold = Fold(lambda key: {"v": 2, "user": key, "merged_into": "x"}, policy())
    event = {"v": 1, "id": "e", "kind": "page", "user": "y", "ts": T0, "at": T0, "hops": MAX_HOPS}
    fold.apply(event)
    [(_, code, reason)] = fold.dead
    assert code == "identity_loop" and "forwarded 4 times" in reason and not fold.forwards


@settings(max_examples=40, deadline=None)
@given(st.randoms(use_true_random=False), st.integers(1, 4))
def test_the_merged_profile_does_not_depend_on_arrival_order(rng: Any, split: int) -> None:
    """Anonymous and known events of one person, shuffled across source
    partitions and batches, always add up to the same profile facts."""
    items = [view(n, f"p-{n % 5}", anonymousId="a1") for n in range(6)]
    items += [identify(20, anonymousId="a1", userId="u1")]
    items += [view(30 + n, f"p-{n % 3}", userId="u1", anonymousId="a1") for n in range(4)]
    items += [view(40, anonymousId="a1"), view(2, anonymousId="a1")]  # one late, one resent
    h = Harness()
    records = [h.record(source, body, partition=rng.randrange(split)) for source, body in items]
    rng.shuffle(records)
    cut = rng.randrange(len(records) + 1)
    h.deliver(records[:cut])
    h.deliver(records[cut:])
    canonical = [loads(v) for v in h.store.values() if b"merged_into" not in v]
    assert [p["user"] for p in canonical] == ["u1"]
    [user] = canonical
    assert user["n"] == 12
    assert sorted(v[0] - T0 for v in user["views"]) == [*range(6), 30, 31, 32, 33, 40]
