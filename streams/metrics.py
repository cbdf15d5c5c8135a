"""Every Prometheus metric kairos exports, declared once.

Built against a registry that is passed in, never the global one, so tests
and several apps in one process do not collide. Dashboards and alert rules
query only these names.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Seconds; stages range from sub-millisecond state updates to CPU generation.
LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
# Seconds from an event's own timestamp to its effect in the table. Event
# time trails arrival by as long as a device was offline, so these go on
# past the stage latencies'; 2 s is the default freshness target.
FRESHNESS_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 5.0,
    10.0, 30.0, 60.0, 300.0, 3600.0,
)  # fmt: skip

# The stages kairos_stage_seconds measures, in a moment's order.
STAGES = ("ingest_to_state", "event_to_moment", "moment_to_generation", "prompt", "generation",
          "delivery")  # fmt: skip


class Metrics:
    """The metric families, created against ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.events_in = Counter(
            "kairos_events_in_total",
            "Valid events taken in, by source topic and event kind.",
            ["source", "kind"],
            registry=registry,
        )
        self.events_out = Counter(
            "kairos_events_out_total",
            "Records kairos wrote for others to read, by topic role (moments, offers, "
            "outcomes) and kind (moment type, or outcome). Dead letters: "
            "kairos_dead_letters_total.",
            ["topic", "kind"],
            registry=registry,
        )
        self.dead_letters = Counter(
            "kairos_dead_letters_total",
            "Records sent to the dead-letter topic, by stage and reason code.",
            ["stage", "code"],
            registry=registry,
        )
        self.state_updates = Counter(
            "kairos_state_updates_total",
            "Events folded into per-user state by the context agent.",
            registry=registry,
        )
        self.event_time = Counter(
            "kairos_event_time_total",
            "Events applied to per-user state but kept out of the windowed features, by "
            "outcome: late (older than their partition's watermark, the newest event time "
            "less KAIROS_ALLOWED_LATENESS_S); future (stamped more than KAIROS_MAX_FUTURE_S "
            "after they arrived: taken at their arrival time, windows included).",
            ["outcome"],
            registry=registry,
        )
        self.duplicates = Counter(
            "kairos_duplicates_total",
            "Events dropped as duplicates (an event id the profile has already applied).",
            registry=registry,
        )
        self.identity_merges = Counter(
            "kairos_identity_merges_total",
            "Identity links applied, by outcome (merged, already, conflict, loop).",
            ["outcome"],
            registry=registry,
        )
        self.state_writes = Counter(
            "kairos_state_writes_total",
            "Profile table writes (one per user per bundle, each one changelog message).",
            registry=registry,
        )
        self.changelog_restored = Counter(
            "kairos_changelog_restored_records_total",
            "Changelog records a worker wrote into its RocksDB partitions in bulk, "
            "before Faust's recovery (streams/runtime/restore.py), by table.",
            ["table"],
            registry=registry,
        )
        self.profiles_expired = Counter(
            "kairos_profiles_expired_total",
            "Profiles deleted after KAIROS_PROFILE_TTL_S without an event.",
            registry=registry,
        )
        self.reference_updates = Counter(
            "kairos_reference_updates_total",
            "Store and product records read from the reference topic, by kind and outcome "
            "(applied, removed, rejected).",
            ["kind", "outcome"],
            registry=registry,
        )
        self.product_embeddings = Counter(
            "kairos_product_embeddings_total",
            "Product vectors computed from the catalog and the reference topic, by outcome: "
            "embedded (a new or changed product's text), cached (read back from the vector "
            "cache at start), removed (a deleted product), failed (the model raised: the "
            "product keeps no new vector until the retry).",
            ["outcome"],
            registry=registry,
        )
        self.product_vectors = Gauge(
            "kairos_product_vectors",
            "Products that have a vector now (streams/vectors.py).",
            registry=registry,
        )
        self.embedding_latency = Histogram(
            "kairos_embedding_seconds",
            "Time to embed one batch of product texts (one encoder call).",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.api_requests = Counter(
            "kairos_api_requests_total",
            "Profile API requests, by view and outcome (ok, forwarded, not_found, moved, "
            "unauthorized, bad_request, unavailable).",
            ["view", "outcome"],
            registry=registry,
        )
        self.consumer_lag = Gauge(
            "kairos_consumer_lag",
            "Records behind the end of each source partition this worker reads (ingest).",
            ["topic", "partition"],
            registry=registry,
        )
        self.ingest_batches = Histogram(
            "kairos_ingest_batch_records",
            "Records per batch the ingest consumer took from the source topics.",
            buckets=(1, 10, 100, 500, 1000, 2000, 5000, 10000),
            registry=registry,
        )
        self.moments = Counter(
            "kairos_moments_total", "Moments detected, by type.", ["moment"], registry=registry
        )
        self.moments_suppressed = Counter(
            "kairos_moments_suppressed_total",
            "Moments recorded without an offer, by type and reason (holdout, quiet_hours, "
            "frequency_cap, no_channel: the person consented to none of the type's channels, "
            "stale: the offer would go out later after the moment's event time than its type "
            "allows).",
            ["moment", "reason"],
            registry=registry,
        )
        self.offers = Counter(
            "kairos_offers_total",
            "Offers emitted, by moment type, message source (model or fallback) and prompt "
            "variant.",
            ["moment", "source", "variant"],
            registry=registry,
        )
        self.offer_channels = Counter(
            "kairos_offer_channels_total",
            "Offers emitted, by moment type, channel (push, email, sms) and why that channel "
            "(agents/channels.py): only (the one the type and the person's consent allow), "
            "prior (no feedback history yet), history.",
            ["moment", "channel", "reason"],
            registry=registry,
        )
        self.offer_starts = Counter(
            "kairos_offer_starts_total",
            "Generations started, by where: at detection (handed over in-process by the "
            "context agent) or from the topic (a moment this worker did not see detected: "
            "after a restart or a rebalance, or past the hand-off's limit).",
            ["at"],
            registry=registry,
        )
        self.offer_transactions = Counter(
            "kairos_offer_transactions_total",
            "Transactions of the offers stage (each: the offers that were ready, and the "
            "moments partition's commit), by outcome: committed, aborted (the worker stops, "
            "and its restart delivers them again), fenced (the partition went to another "
            "worker, which delivers them). None while KAIROS_OFFERS_EXACTLY_ONCE is off.",
            ["outcome"],
            registry=registry,
        )
        self.offer_moments = Counter(
            "kairos_offer_moments_total",
            "Moments the offers stage finished (its commit passed them), by outcome: offered, "
            "suppressed (held out, quiet hours, capped), duplicate (a second copy of a moment "
            "already offered: written twice by the stages before, after a crash or by a paused "
            "worker), stale (read too long after its event time to send), dead_letter (its offer "
            "could not be written).",
            ["outcome"],
            registry=registry,
        )
        self.offer_partitions = Gauge(
            "kairos_offer_partitions",
            "Partitions of kairos.internal.moments whose offers this worker delivers now.",
            registry=registry,
        )
        self.context_bundles = Counter(
            "kairos_context_bundles_total",
            "Bundles of events the context agent read from kairos.internal.events, by where "
            "they were folded into the profiles: in_process (by this worker's ingest as it "
            "produced them; the agent only waits for that work) or topic (by the agent, on "
            "reading them: bundles from other workers, forwarded merges, or after a restart "
            "or rebalance).",
            ["path"],
            registry=registry,
        )
        self.context_skipped = Counter(
            "kairos_context_skipped_records_total",
            "Records of kairos.internal.events the stream consumer skipped and the context "
            "agent read back itself before going on (agents/continuity.py).",
            registry=registry,
        )
        self.fallbacks = Counter(
            "kairos_llm_fallbacks_total",
            "Offers that used the template message, by reason: an LLM client error code "
            "(models/client.py) or a guardrails code (models/guardrails.py REASONS).",
            ["reason"],
            registry=registry,
        )
        self.llm_requests = Counter(
            "kairos_llm_requests_total",
            "Requests to the LLM endpoint, by outcome.",
            ["outcome"],
            registry=registry,
        )
        self.attribution_moments = Counter(
            "kairos_attribution_moments_total",
            "Moments that led to an offer (group offer) or were held out as the rule's "
            "control (group holdout), by moment type and prompt variant.",
            ["moment", "variant", "group"],
            registry=registry,
        )
        self.attributed = Counter(
            "kairos_attributed_outcomes_total",
            "Feedback joined to its offer, and conversions (an order within the attribution "
            "window of a moment), counted once per moment and outcome.",
            ["moment", "variant", "group", "outcome"],
            registry=registry,
        )
        self.unattributed = Counter(
            "kairos_feedback_unattributed_total",
            "Feedback that joined no offer: unknown_offer or outside_window.",
            ["reason"],
            registry=registry,
        )
        self.replies = Counter(
            "kairos_replies_total",
            "Replies customers wrote to offers, by what became of the text: kept, cut "
            "(to its first characters), or dropped and why (instructions, contact, "
            "personal_data, code, empty; models/replies.py).",
            ["outcome"],
            registry=registry,
        )
        self.llm_in_flight = Gauge(
            "kairos_llm_in_flight",
            "LLM requests open now (at most KAIROS_LLM_MAX_IN_FLIGHT).",
            registry=registry,
        )
        self.llm_circuit = Gauge(
            "kairos_llm_circuit_state",
            "The LLM client's circuit breaker: 0 closed, 1 half-open (one trial), 2 open.",
            registry=registry,
        )
        self.llm_tokens = Counter(
            "kairos_llm_tokens_total",
            "Tokens reported by the LLM endpoint, by kind (prompt or completion).",
            ["kind"],
            registry=registry,
        )
        self.llm_latency = Histogram(
            "kairos_llm_request_seconds",
            "Latency of one LLM request, retries included.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.stage_latency = Histogram(
            "kairos_stage_seconds",
            "Time spent in or between pipeline stages.",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        # Series that exist at zero before the first one is counted: a healthy
        # worker's fallback and unattributed panels show 0, not "No data", and
        # the fallback-rate alert watches a series from the start.
        for reason in ("unavailable", "circuit_open", "timeout"):  # an LLM outage's
            self.fallbacks.labels(reason)
        for reason in ("unknown_offer", "outside_window"):
            self.unattributed.labels(reason)
        # A stage's histogram created by its first observation would be scraped
        # with that observation in it, and rate() never sees it (nor the
        # others in the same scrape): a burst's latency would not be drawn.
        for stage in STAGES:
            self.stage_latency.labels(stage)
        for outcome in ("embedded", "cached", "removed", "failed"):
            self.product_embeddings.labels(outcome)

        self.feature_freshness = Histogram(
            "kairos_feature_freshness_seconds",
            "From an event's timestamp to the table write that holds its effect (readable "
            "through the Profile API), by the feature family it feeds (agents/freshness.py).",
            ["family"],
            buckets=FRESHNESS_BUCKETS,
            registry=registry,
        )
        self.freshness_slo = Gauge(
            "kairos_freshness_slo_seconds",
            "The p99 of kairos_feature_freshness_seconds each family is held to "
            "(KAIROS_FRESHNESS_SLO_P99_MS).",
            registry=registry,
        )

    def exposition(self) -> bytes:
        """The registry in Prometheus text format."""
        return generate_latest(self.registry)


def observe_all(histogram: Histogram, amounts: Iterable[float]) -> None:
    """``histogram.observe(amount)`` for each of ``amounts`` (numbers, not NaN),
    at one lock per bucket touched instead of two per observation: the same
    buckets and count, and the same sum, added in the same order.

    For a stage that observes once per event of a bundle: those locks and
    calls were a tenth of the worker's ingest CPU. It reads prometheus_client's
    Histogram internals (``_upper_bounds``, ``_buckets``, ``_sum``, as of the
    pinned 0.26); tests/unit/test_metrics.py holds it to ``observe``. The sum
    is read and set, not incremented: ``histogram`` is observed from one
    thread (the event loop's).
    """
    histogram._raise_if_not_observable()
    bounds = histogram._upper_bounds
    counts = [0] * len(bounds)
    total = histogram._sum.get()
    for amount in amounts:
        total += amount
        counts[bisect_left(bounds, amount)] += 1  # the first bound >= amount, as observe's
    histogram._sum.set(total)
    for bucket, count in zip(histogram._buckets, counts, strict=True):
        if count:
            bucket.inc(count)
