"""The LLM endpoint over TLS: the CA bundle setting, and the API key kept secret."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pydantic import SecretStr

from models.client import LLMClient, LLMUnavailable
from tests.support.fake_llm import FakeLLM
from tests.support.secure import Tls, make_tls, server_context

KEY = SecretStr("llm-key-" + "5f1c9e0a7b")


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    return make_tls(tmp_path_factory.mktemp("llm-tls"))


async def ask(url: str, ca_file: Path | None) -> str:
    client = LLMClient(url, "fake-llm", api_key=KEY, ca_file=ca_file, retries=0, timeout_s=10)
    try:
        completion = await client.chat([{"role": "user", "content": "hi"}], max_tokens=8)
        return completion.text
    finally:
        await client.aclose()


def test_an_https_endpoint_signed_by_the_configured_ca_answers(tls: Tls) -> None:
    with FakeLLM(tls=server_context(tls)) as llm:
        assert llm.url.startswith("https://")
        text = asyncio.run(ask(llm.url, tls.ca))
        assert "headline" in text
        assert llm.authorizations == [f"Bearer {KEY.get_secret_value()}"]


def test_a_certificate_from_an_unknown_ca_is_refused_without_the_key(tls: Tls) -> None:
    with FakeLLM(tls=server_context(tls)) as llm:
        with pytest.raises(LLMUnavailable) as caught:
            asyncio.run(ask(llm.url, None))  # the system's CAs do not know the test CA
        assert llm.requests == []  # nothing was sent before the handshake failed
    assert "CERTIFICATE_VERIFY_FAILED" in str(caught.value)
    assert KEY.get_secret_value() not in str(caught.value)
