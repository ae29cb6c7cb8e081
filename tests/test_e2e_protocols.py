"""End to end: Chat Completions and Anthropic Messages through a real mitmdump with codex-fix.

Real clients (openai-python chat streaming, anthropic-sdk-python) against the mock
backend over HTTP/1.1 and HTTP/2, for truncations, stalls, a finished stream that never
sends `[DONE]` or never closes, in-band errors, and an upstream that gzips its SSE
although asked for `accept-encoding: identity`.
"""

from __future__ import annotations

import json
import ssl
import zlib
from collections.abc import Mapping
from typing import Any

import anthropic
import httpx
import openai
import pytest

try:  # openai >= 3 and anthropic >= 2 are built on httpx2, earlier versions on httpx
    import httpx2 as openai_httpx
except ImportError:
    openai_httpx = httpx

from codexfix.testing.backend import MockBackend
from codexfix.testing.bodies import sse_events
from codexfix.testing.mitmdump import Mitmdump
from codexfix.testing.scenario import Scenario

from support.transcripts import FIXTURES, events

pytestmark = pytest.mark.e2e

TIMEOUT = 10.0
DONE = b"data: [DONE]\n\n"
CUT = 6

CHAT = sse_events((FIXTURES / "chat" / "openai-gpt4o-text-usage-DONE.sse").read_bytes())
CHAT_TEXT = "".join(
    c["delta"].get("content") or "" for p in events(b"".join(CHAT[:-1])) for c in p["choices"]
)
GROQ = (FIXTURES / "chat" / "groq-gpt-oss-midstream-event-error.sse").read_bytes()
CLAUDE = sse_events(
    (FIXTURES / "anthropic" / "claude-sonnet4-text-then-2-tool-use.sse").read_bytes()
)
OVERLOADED = (
    b'data: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n'
)


def gzipped(parts: list[bytes]) -> tuple[bytes, ...]:
    """Each part compressed so that it decodes on its own arrival (a streaming gzip)."""
    compressor = zlib.compressobj(wbits=16 + zlib.MAX_WBITS)
    out = [compressor.compress(part) + compressor.flush(zlib.Z_SYNC_FLUSH) for part in parts]
    return (*out[:-1], out[-1] + compressor.flush())


SCENARIOS = {
    "chat-healthy": Scenario(parts=tuple(CHAT)),
    "chat-no-headers": Scenario(parts=tuple(CHAT), headers_delay=None),
    "chat-eof": Scenario(parts=tuple(CHAT[:CUT])),
    "chat-cut": Scenario(parts=(*CHAT[:CUT], CHAT[CUT][:20]), end="cut"),
    "chat-stall": Scenario(parts=tuple(CHAT[:CUT]), end="stall"),
    "chat-no-done": Scenario(parts=tuple(CHAT[:-1])),
    "chat-no-done-held": Scenario(parts=tuple(CHAT[:-1]), end="stall"),
    "chat-groq-error": Scenario(parts=(GROQ,)),
    "chat-gzip": Scenario(
        headers=(("content-type", "text/event-stream"), ("content-encoding", "gzip")),
        parts=gzipped(CHAT),
    ),
    "chat-gzip-cut": Scenario(
        headers=(("content-type", "text/event-stream"), ("content-encoding", "gzip")),
        parts=gzipped(CHAT)[:CUT],
    ),
    "anthropic-healthy": Scenario(parts=tuple(CLAUDE)),
    "anthropic-no-headers": Scenario(parts=tuple(CLAUDE), headers_delay=None),
    "anthropic-eof": Scenario(parts=tuple(CLAUDE[:CUT])),
    "anthropic-cut": Scenario(parts=(*CLAUDE[:CUT], CLAUDE[CUT][:20]), end="cut"),
    "anthropic-stall": Scenario(parts=tuple(CLAUDE[:CUT]), end="stall"),
    "anthropic-held": Scenario(parts=tuple(CLAUDE), end="stall"),
    "anthropic-data-only-error": Scenario(parts=(*CLAUDE[:CUT], OVERLOADED)),
    "anthropic-gzip": Scenario(
        headers=(("content-type", "text/event-stream"), ("content-encoding", "gzip")),
        parts=gzipped(CLAUDE),
    ),
}


@pytest.fixture(scope="module")
def scenarios() -> Mapping[str, Scenario]:
    return SCENARIOS


def base_url(proxies: dict[str, Mitmdump], protocol: str) -> str:
    """h2: TLS to mitmproxy, which then speaks HTTP/2 to the mock's TLS port too."""
    return proxies["h1"].url if protocol == "h1" else f"https://127.0.0.1:{proxies['h2'].port}"


def http_client(proxies: dict[str, Mitmdump], protocol: str, module: Any = httpx) -> Any:
    verify = ssl.create_default_context(cafile=str(proxies["h2"].ca_cert))
    http2 = protocol == "h2"
    return module.Client(http1=not http2, http2=http2, verify=verify, timeout=TIMEOUT)


def raw_body(
    proxies: dict[str, Mitmdump], protocol: str, path: str
) -> tuple[httpx.Response, bytes]:
    body = {"model": "m", "stream": True, "messages": []}
    with http_client(proxies, protocol) as client:
        url = f"{base_url(proxies, protocol)}{path}"
        with client.stream("POST", url, json=body) as response:
            return response, b"".join(response.iter_raw())


# -- Chat Completions -------------------------------------------------------------------


def chat_client(proxies: dict[str, Mitmdump], protocol: str, name: str) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{base_url(proxies, protocol)}/s/{name}/v1",
        api_key="sk-test",
        max_retries=0,
        http_client=http_client(proxies, protocol, openai_httpx),
    )


def chat_text(proxies: dict[str, Mitmdump], protocol: str, name: str) -> str:
    client = chat_client(proxies, protocol, name)
    stream = client.chat.completions.create(model="gpt-4o", messages=[], stream=True)
    return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)


@pytest.mark.parametrize("protocol", ["h1", "h2"])
@pytest.mark.parametrize(
    ("name", "code", "says"),
    [
        ("chat-eof", "server_error", "clean end of body"),
        ("chat-cut", "server_error", "upstream closed the stream before finish_reason ("),
        ("chat-stall", "timeout", "sent nothing for"),
        ("chat-no-headers", "timeout", "sent no response headers within 1.5s"),
    ],
)
def test_openai_chat_raises_api_error_with_the_injected_code(
    proxies: dict[str, Mitmdump], protocol: str, name: str, code: str, says: str
) -> None:
    with pytest.raises(openai.APIError) as raised:
        chat_text(proxies, protocol, name)
    assert raised.value.code == code
    assert raised.value.message.startswith("codex-fix: ") and says in raised.value.message


@pytest.mark.parametrize("protocol", ["h1", "h2"])
@pytest.mark.parametrize("name", ["chat-healthy", "chat-no-done", "chat-no-done-held", "chat-gzip"])
def test_openai_chat_completes_normally_once_finish_reason_came(
    proxies: dict[str, Mitmdump], protocol: str, name: str
) -> None:
    assert chat_text(proxies, protocol, name) == CHAT_TEXT


@pytest.mark.parametrize("protocol", ["h1", "h2"])
@pytest.mark.parametrize(
    ("name", "tail"),
    [
        ("chat-healthy", b""),
        ("chat-no-done", DONE),
        ("chat-no-done-held", DONE),
        ("chat-groq-error", DONE),  # the upstream's error passes; only [DONE] is ensured
        ("chat-gzip", b""),
    ],
)
def test_chat_bytes_are_the_upstream_bytes_then_what_the_protocol_needs(
    proxies: dict[str, Mitmdump], backend: MockBackend, protocol: str, name: str, tail: bytes
) -> None:
    response, body = raw_body(proxies, protocol, f"/s/{name}/v1/chat/completions")
    upstream = GROQ if name == "chat-groq-error" else b"".join(CHAT[:-1] if tail else CHAT)
    assert body == upstream + tail
    assert "content-encoding" not in response.headers
    assert backend.requests_for(name)[-1].header("accept-encoding") == "identity"


def test_groq_in_band_error_reaches_openai_as_its_own_error(proxies: dict[str, Mitmdump]) -> None:
    with pytest.raises(openai.APIError) as raised:
        chat_text(proxies, "h1", "chat-groq-error")
    assert raised.value.code == "tool_use_failed"


def test_gzip_cut_short_is_decoded_then_ends_with_the_injected_error(
    proxies: dict[str, Mitmdump],
) -> None:
    _, body = raw_body(proxies, "h1", "/s/chat-gzip-cut/v1/chat/completions")
    assert body.startswith(b"".join(CHAT[: CUT - 1]))
    error, done = events(body)[-2:]
    assert done == "[DONE]" and error["error"]["code"] == "server_error"


# -- Anthropic Messages -----------------------------------------------------------------


def anthropic_client(proxies: dict[str, Mitmdump], protocol: str, name: str) -> Any:
    return anthropic.Anthropic(
        base_url=f"{base_url(proxies, protocol)}/s/{name}",
        api_key="sk-ant-test",
        max_retries=0,
        http_client=http_client(proxies, protocol, openai_httpx),  # anthropic 2.x: httpx2 too
    )


ARGS: dict[str, Any] = {"model": "claude-sonnet-4", "max_tokens": 100, "messages": []}


@pytest.mark.parametrize("protocol", ["h1", "h2"])
@pytest.mark.parametrize(
    ("name", "error_type", "says"),
    [
        ("anthropic-eof", "api_error", "before message_stop (clean end of body"),
        ("anthropic-cut", "api_error", "before message_stop ("),
        ("anthropic-stall", "timeout_error", "sent nothing for"),
        ("anthropic-no-headers", "timeout_error", "sent no response headers within 1.5s"),
        ("anthropic-data-only-error", "overloaded_error", "Overloaded"),
    ],
)
@pytest.mark.parametrize("api", ["create", "stream"])
def test_anthropic_sdk_raises_api_status_error(
    proxies: dict[str, Mitmdump], protocol: str, name: str, error_type: str, says: str, api: str
) -> None:
    client = anthropic_client(proxies, protocol, name)
    with pytest.raises(anthropic.APIStatusError) as raised:
        if api == "create":
            for _ in client.messages.create(**ARGS, stream=True):
                pass
        else:
            with client.messages.stream(**ARGS) as stream:
                for _ in stream.text_stream:
                    pass
    body = raised.value.body
    assert isinstance(body, dict) and body["error"]["type"] == error_type
    assert says in body["error"]["message"]


@pytest.mark.parametrize("protocol", ["h1", "h2"])
@pytest.mark.parametrize("name", ["anthropic-healthy", "anthropic-held", "anthropic-gzip"])
def test_anthropic_sdk_gets_the_whole_message(
    proxies: dict[str, Mitmdump], protocol: str, name: str
) -> None:
    client = anthropic_client(proxies, protocol, name)
    with client.messages.stream(**ARGS) as stream:
        message = stream.get_final_message()
    assert message.stop_reason == "tool_use"
    assert [block.type for block in message.content] == ["text", "tool_use", "tool_use"]
    _, body = raw_body(proxies, protocol, f"/s/{name}/v1/messages")
    assert body == b"".join(CLAUDE)  # no [DONE], nothing added


def test_anthropic_truncation_bytes_have_one_error_event_and_no_done(
    proxies: dict[str, Mitmdump],
) -> None:
    _, body = raw_body(proxies, "h1", "/s/anthropic-eof/v1/messages")
    head = b"".join(CLAUDE[:CUT])
    assert body.startswith(head)
    tail = body[len(head) :]
    assert tail.startswith(b"event: error\ndata: ") and tail.count(b"\n\n") == 1
    assert json.loads(tail.split(b"data: ", 1)[1])["error"]["type"] == "api_error"
