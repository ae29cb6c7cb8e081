"""Captures: byte-exact stream files, a redacted record, and no secret on disk or in the log."""

from __future__ import annotations

import gzip
import json
import logging
import tracemalloc
import zlib
from pathlib import Path

import brotli
import pytest

from codexfix import Limits, StreamFixer, UpstreamBroken
from codexfix.capture import (
    Capture,
    FlowFacts,
    FlowRecord,
    build_record,
    capture_stem,
    read_record,
)
from codexfix.capture.record import FilesRecord
from codexfix.capture.redact import (
    MAX_DECODED_BODY,
    REDACTED,
    is_secret_name,
    redact_body,
    redact_headers,
    redact_text,
    redact_url,
)
from codexfix.decoding import decode_body
from codexfix.report import StreamReport, Usage
from codexfix.testing.bodies import compressed

from support.transcripts import FIXTURES, chunked

TRANSCRIPT = FIXTURES / "responses" / "codex-backend-gpt5-text.sse"
STARTED = 1758750000.123456  # 2025-09-24T21:40:00.123456Z
LOG = logging.LoggerAdapter(logging.getLogger("codexfix.test"), {})


def canary(place: str) -> str:
    """A secret-shaped value naming where it was planted (long enough for every pattern)."""
    return f"CANARY{place}Zq7x9K2mP4vR8sT1"


CANARIES = {
    "auth": canary("auth"),
    "proxyauth": canary("proxyauth"),
    "cookie": canary("cookie"),
    "setcookie": canary("setcookie"),
    "account": canary("account"),
    "xapikey": canary("xapikey"),
    "apikey": canary("apikey"),
    "org": canary("org"),
    "custombearer": canary("custombearer"),
    "googkey": canary("googkey"),
    "userinfo": canary("userinfo"),
    "querykey": canary("querykey"),
    "queryapikey": canary("queryapikey"),
    "querytoken": canary("querytoken"),
    "querysig": canary("querysig"),
    "fragment": canary("fragment"),
    "deepkey": canary("deepkey"),
    "deeptoken": canary("deeptoken"),
    "password": canary("password"),
    "bodybearer": canary("bodybearer"),
    "envassign": canary("envassign"),
    "warning": canary("warning"),
    "note": canary("note"),
}
SK_KEY = "sk-proj-" + canary("skkey")
JWT = "eyJhbGciOiJSUzI1NiJ9." + canary("jwtpayload") + ".c2lnbmF0dXJlX3BhcnQ"


def request_headers() -> list[tuple[str, str]]:
    c = CANARIES
    return [
        ("Host", "chatgpt.com"),
        ("Authorization", f"Bearer {c['auth']}"),
        ("Proxy-Authorization", f"Basic {c['proxyauth']}"),
        ("Cookie", f"__Secure-next-auth.session-token={c['cookie']}; other=1"),
        ("chatgpt-account-id", c["account"]),
        ("x-api-key", c["xapikey"]),
        ("api-key", c["apikey"]),
        ("OpenAI-Organization", c["org"]),
        ("x-custom-forward", f"Bearer {c['custombearer']}"),
        ("x-goog-api-key", c["googkey"]),
        ("x-openai-key-shaped", SK_KEY),
        ("content-type", "application/json"),
        ("session_id", "0199a2b4-not-a-secret"),
    ]


def request_url() -> str:
    c = CANARIES
    return (
        f"https://codex:{c['userinfo']}@chatgpt.com/backend-api/codex/responses"
        f"?key={c['querykey']}&api_key={c['queryapikey']}&access_token={c['querytoken']}"
        f"&sig={c['querysig']}&keep=yes#key={c['fragment']}"
    )


def request_json() -> dict[str, object]:
    c = CANARIES
    return {
        "model": "gpt-5",
        "prompt_cache_key": "cache-key-is-not-a-secret",
        "max_output_tokens": 100,
        "input": [
            {
                "role": "user",
                "content": [
                    {
                        "type": "input_text",
                        "text": (
                            f"my key is {SK_KEY}, header Authorization: Bearer {c['bodybearer']}"
                            f", env OPENAI_API_KEY={c['envassign']} and a token {JWT}"
                        ),
                    },
                    {"tool": {"config": {"api_key": c["deepkey"], "limits": [1, 2]}}},
                    {"auth": [{"refresh_token": c["deeptoken"], "password": c["password"]}]},
                ],
            }
        ],
    }


def facts(body: bytes, encoding: str | None = None) -> FlowFacts:
    headers = request_headers()
    if encoding:
        headers.append(("Content-Encoding", encoding))
    return FlowFacts(
        method="POST",
        url=request_url(),
        http_version="HTTP/1.1",
        request_headers=headers,
        request_body=body,
        response_status=200,
        response_headers=[
            ("content-type", "text/event-stream"),
            ("set-cookie", f"__cf_bm={CANARIES['setcookie']}; path=/"),
        ],
        duration_s=1.25,
        ttfb_s=0.5,
    )


def report() -> StreamReport:
    return StreamReport(
        protocol="responses",
        events=19,
        bytes_in=10,
        bytes_out=10,
        model="gpt-5-2025-08-07",
        repairs=["output"],
        warnings=1,
        usage=Usage(2239, 2176, 15, 0),
        notes=[f"upstream said api_key={CANARIES['note']}"],
    )


def close(capture: Capture, flow: FlowFacts) -> Path | None:
    """As the addon ends a flow: its facts, its stream's report, the summary's outcome and
    the warning lines logged."""
    warning = f"coercion failed: excerpt b'Authorization: Bearer {CANARIES['warning']}'"
    return capture.close(flow, report(), outcome="completed", warnings=[warning])


def zstd_stream(data: bytes) -> bytes:
    """As the Codex CLI sends it: a streamed frame, no content size in its header."""
    return compressed(data, "zstd")


ENCODINGS = {
    "identity": (None, lambda b: b),
    "zstd": ("zstd", zstd_stream),
    "gzip": ("gzip", gzip.compress),
    "deflate": ("deflate", zlib.compress),
    "br": ("br", brotli.compress),
}


@pytest.mark.parametrize("name", ENCODINGS)
def test_no_canary_reaches_any_file_or_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, name: str
) -> None:
    caplog.set_level(logging.DEBUG)
    encoding, encode = ENCODINGS[name]
    raw = json.dumps(request_json()).encode()
    transcript = TRANSCRIPT.read_bytes()
    capture = Capture(tmp_path / "captures", STARTED, "0a1b2c3d-flow")
    capture.append_upstream(transcript)
    capture.append_client(transcript)
    path = close(capture, facts(encode(raw), encoding))
    assert path is not None

    written = {p.name: p.read_bytes() for p in (tmp_path / "captures").iterdir()}
    assert len(written) == 3
    for secret in [*CANARIES.values(), SK_KEY, JWT, "CANARY"]:
        for file_name, content in written.items():
            assert secret.encode() not in content, (secret, file_name)
        assert secret not in caplog.text

    record = json.loads(path.read_text())
    body = record["request"]["body"]
    assert isinstance(body, dict), body  # decoded, whatever the content-encoding
    assert body["model"] == "gpt-5" and body["max_output_tokens"] == 100
    assert body["prompt_cache_key"] == "cache-key-is-not-a-secret"
    assert body["input"][0]["content"][1]["tool"]["config"] == {
        "api_key": REDACTED,
        "limits": [1, 2],
    }
    assert body["input"][0]["content"][0]["text"] == (
        f"my key is {REDACTED}, header Authorization: Bearer {REDACTED}, "
        f"env OPENAI_API_KEY={REDACTED} and a token {REDACTED}"
    )
    headers = dict(record["request"]["headers"])
    assert headers["Authorization"] == f"Bearer {REDACTED}"
    assert headers["session_id"] == "0199a2b4-not-a-secret"
    assert record["request"]["url"] == (
        f"https://{REDACTED}@chatgpt.com/backend-api/codex/responses?key={REDACTED}"
        f"&api_key={REDACTED}&access_token={REDACTED}&sig={REDACTED}&keep=yes"
        f"#key={REDACTED}"
    )


def test_the_record_schema(tmp_path: Path) -> None:
    capture = Capture(tmp_path, STARTED, "0a1b2c3d-4e5f")
    capture.append_upstream(b"data: 1\n\n")
    capture.append_client(b"data: 1\n\n")
    path = close(capture, facts(b'{"model": "gpt-5"}'))
    stem = "20250924T214000.123456Z-0a1b2c3d"
    assert path == tmp_path / f"{stem}.json"
    record = json.loads(path.read_text())
    assert list(record) == [
        "version",
        "flow_id",
        "started",
        "request",
        "response",
        "protocol",
        "timings",
        "outcome",
        "model",
        "events",
        "bytes_in",
        "bytes_out",
        "repairs",
        "warnings",
        "notes",
        "usage",
        "files",
    ]
    assert record["version"] == 1
    assert record["flow_id"] == "0a1b2c3d-4e5f"
    assert record["started"] == "2025-09-24T21:40:00.123456+00:00"
    assert record["request"]["method"] == "POST"
    assert record["response"]["status"] == 200
    assert record["timings"] == {"duration_s": 1.25, "ttfb_s": 0.5}
    assert record["usage"] == {
        "input_tokens": 2239,
        "cached_tokens": 2176,
        "output_tokens": 15,
        "reasoning_tokens": 0,
    }
    assert record["files"] == {"upstream": f"{stem}.upstream.sse", "client": f"{stem}.client.sse"}


def test_a_record_reads_back_as_the_model_it_was_written_from(tmp_path: Path) -> None:
    deep: object = "bottom"
    for _ in range(150):  # 300 levels: deeper than pydantic's JSON parser goes
        deep = {"input": [deep]}
    body = {"model": "gpt-5", "seed": 10**30, "deep": deep}
    flow = facts(json.dumps(body).encode())
    capture = Capture(tmp_path, STARTED, "0a1b2c3d-4e5f")
    capture.append_client(b"data: 1\n\n")
    path = close(capture, flow)
    assert path is not None
    record = read_record(path)
    warning = f"coercion failed: excerpt b'Authorization: Bearer {REDACTED}'"
    assert record == build_record(
        flow,
        report(),
        flow_id="0a1b2c3d-4e5f",
        started=STARTED,
        files=FilesRecord(client=capture.path("client.sse").name),
        outcome="completed",
        warnings=[warning.replace(REDACTED, CANARIES["warning"])],
    )
    assert record.request.body == body
    assert record.warnings == [warning] and record.usage == Usage(2239, 2176, 15, 0)
    assert record.to_json() == path.read_text(encoding="utf-8")  # written as it reads


def test_a_record_as_written_before_the_model_still_reads() -> None:
    written = {
        "version": 1,
        "flow_id": "0a1b2c3d",
        "started": "2025-09-24T21:40:00.123456+00:00",
        "request": {
            "method": "POST",
            "url": "https://chatgpt.com/backend-api/codex/responses",
            "http_version": "HTTP/2.0",
            "headers": [["authorization", f"Bearer {REDACTED}"]],
            "body": {"model": "gpt-5"},
        },
        "response": {"status": 200, "headers": []},
        "protocol": "responses",
        "timings": {"duration_s": 3, "ttfb_s": None},
        "outcome": "completed",
        "model": "gpt-5",
        "events": 19,
        "bytes_in": 10,
        "bytes_out": 10,
        "repairs": [],
        "warnings": [],
        "notes": [],
        "usage": {"input_tokens": 1, "cached_tokens": 0, "output_tokens": 2, "reasoning_tokens": 0},
        "files": {"upstream": "x.upstream.sse", "client": None},
    }
    record = FlowRecord.model_validate(written)
    assert record.request.headers == [("authorization", f"Bearer {REDACTED}")]
    assert record.timings.duration_s == 3.0 and record.usage == Usage(1, 0, 2, 0)
    assert json.loads(record.to_json()) == written


def test_stems_sort_by_time() -> None:
    stems = [capture_stem(STARTED + dt, "ffffffff") for dt in (0, 0.5, 9, 3600 * 30)]
    assert stems == sorted(stems)
    assert capture_stem(STARTED, "../../etc/passwd") == "20250924T214000.123456Z-etcpassw"


def test_stream_files_are_byte_exact_whatever_the_chunking(tmp_path: Path) -> None:
    transcript = TRANSCRIPT.read_bytes()
    upstream = transcript[: len(transcript) // 2]  # a cut stream: the client gets a failure
    fixer = StreamFixer("responses", Limits(), LOG, now=0.0)
    capture = Capture(tmp_path, STARTED, "0a1b2c3d")
    client = b""
    for piece in chunked(upstream, [1, 7, 300, 4096]):
        capture.append_upstream(piece)
        out = fixer.feed(piece, 0.0)
        capture.append_client(out)
        client += out
    end = fixer.finish(UpstreamBroken("reset"))
    capture.append_client(end)
    client += end
    capture.close(FlowFacts("POST", "http://h/v1/responses", "HTTP/1.1", [], None), fixer.report)
    assert capture.path("upstream.sse").read_bytes() == upstream
    assert capture.path("client.sse").read_bytes() == client
    assert b"response.failed" in client


def test_a_flow_without_bytes_leaves_only_its_record(tmp_path: Path) -> None:
    capture = Capture(tmp_path, STARTED, "0a1b2c3d")
    capture.append_upstream(b"")
    path = capture.close(
        FlowFacts("GET", "http://h/", "HTTP/2.0", [], None), StreamReport("responses")
    )
    assert path is not None and [p.name for p in tmp_path.iterdir()] == [path.name]
    record = json.loads(path.read_text())
    assert record["files"] == {"upstream": None, "client": None}
    assert record["response"] is None and record["usage"] is None
    assert record["request"]["body"] is None


def test_a_write_error_stops_the_capture_once_and_never_raises(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    capture = Capture(tmp_path, STARTED, "0a1b2c3d")
    capture.path("upstream.sse").symlink_to("/dev/full")  # every write: ENOSPC
    big = TRANSCRIPT.read_bytes() * 4  # more than the write buffer
    with caplog.at_level(logging.WARNING, logger="codexfix"):
        capture.append_upstream(big)
        capture.append_client(big)
        capture.append_upstream(big)
        assert close(capture, facts(b"{}")) is None
    assert capture.failed
    assert [r.getMessage() for r in caplog.records] == [
        f"capture {capture.stem} stopped: [Errno 28] No space left on device"
    ]
    assert not capture.path("json").exists()
    assert not capture.path("client.sse").exists()


def test_an_unusable_directory_never_raises(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    capture = Capture(blocker / "captures", STARTED, "0a1b2c3d")
    with caplog.at_level(logging.WARNING, logger="codexfix"):
        capture.append_upstream(b"data: 1\n\n")
        capture.append_client(b"data: 1\n\n")
        assert close(capture, facts(b"{}")) is None
    assert len(caplog.records) == 1 and "stopped" in caplog.records[0].getMessage()


# -- the redaction functions ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("Authorization", True),
        ("x-api-key", True),
        ("OPENAI_API_KEY", True),
        ("refresh_token", True),
        ("client_secret", True),
        ("Set-Cookie", True),
        ("chatgpt-account-id", True),
        ("key", True),
        ("max_tokens", False),
        ("input_tokens", False),
        ("prompt_cache_key", False),
        ("session_id", False),
        ("content-type", False),
    ],
)
def test_secret_names(name: str, secret: bool) -> None:
    assert is_secret_name(name) == secret


def test_ordinary_text_is_left_alone() -> None:
    text = "the bearer of bad news; max_tokens: 100; task-list ok; ask-me-anything"
    assert redact_text(text) == text


def test_headers_keep_their_names_and_order() -> None:
    pairs = [("Authorization", "Bearer abc"), ("Accept", "text/event-stream"), ("Cookie", "a=b")]
    assert redact_headers(pairs) == [
        ("Authorization", f"Bearer {REDACTED}"),
        ("Accept", "text/event-stream"),
        ("Cookie", REDACTED),
    ]


def test_url_params_other_than_secrets_keep_their_bytes() -> None:
    url = "https://h/p?a=%20x&key=s3cr3t&b=2&empty&api-key=x"
    assert redact_url(url) == f"https://h/p?a=%20x&key={REDACTED}&b=2&empty&api-key={REDACTED}"


def test_bodies_that_cannot_be_decoded_are_described_not_kept() -> None:
    secret = b'{"api_key": "CANARY-undecodable"}'
    note = redact_body(b"\x28\xb5\x2f\xfd garbage " + secret, "zstd")
    assert isinstance(note, str) and note.startswith("[") and "CANARY" not in note
    assert redact_body(b"\xff\xfe\x00binary", None) == "[9 bytes of binary data: not kept]"
    assert "not decoded" in redact_body(b"abc", "compress")


def test_form_and_text_bodies_are_redacted() -> None:
    form = redact_body(
        b"grant_type=x&client_secret=abc&code=1", None, "application/x-www-form-urlencoded"
    )
    assert form == f"grant_type=x&client_secret={REDACTED}&code=1"
    assert redact_body(b"token: abcdefgh", None, "text/plain") == f"token: {REDACTED}"


def test_decoding_is_bounded_and_handles_stacked_codings() -> None:
    raw = b'{"a": 1}'
    assert decode_body(gzip.compress(zstd_stream(raw)), "zstd, gzip", 100) == raw
    assert decode_body(zlib.compress(raw)[2:-4], "deflate", 100) == raw  # raw deflate
    assert decode_body(raw, "identity", 100) == raw


# -- any bytes make a record ----------------------------------------------------------------


def odd(raw: bytes) -> str:
    """Header bytes as mitmproxy gives them: UTF-8 with surrogate escapes."""
    return raw.decode("utf-8", "surrogateescape")


def test_odd_bytes_anywhere_are_escaped_and_secrets_still_redacted(tmp_path: Path) -> None:
    secret = CANARIES["auth"]
    body = {"input": "half an emoji \ud83d", "api_key": "\udcff" + secret, "\ud83d": 1}
    facts = FlowFacts(
        method="POST",
        url=odd(b"http://h/v1/responses?key=" + secret.encode() + b"\xff&q=caf\xe9"),
        http_version="HTTP/1.1",
        request_headers=[
            ("x-odd", odd(b"caf\xe9 \xff\xfe")),
            ("Authorization", odd(b"Bearer \xff" + secret.encode())),
            ("Cookie", odd(b"\xfe\xff")),
            ("x-forward", odd(b"Bearer " + secret.encode() + b"\xfe")),
            ("content-type", "application/json"),
        ],
        request_body=json.dumps(body).encode(),
        response_status=200,
        response_headers=[("x-resp", odd(b"\x80")), ("set-cookie", odd(b"s=\xff" + b"x" * 20))],
    )
    stream = StreamReport("responses", model="gpt-5\udcff", notes=["\ud800"])
    capture = Capture(tmp_path, STARTED, "0a1b2c3d")
    capture.append_upstream(b"data: \xff\x00\n\n")
    path = capture.close(
        facts,
        stream,
        outcome="injected: truncated (upstream said \ud83d)",
        warnings=[f"excerpt b'\\xff' \udcff api_key={secret}"],
    )
    assert path is not None  # the record is written...
    text = path.read_text(encoding="utf-8")
    assert "CANARY" not in text  # ...with every secret redacted
    record = json.loads(text)
    request = record["request"]
    assert request["url"] == f"http://h/v1/responses?key={REDACTED}&q=caf\\xe9"
    assert request["headers"] == [
        ["x-odd", "caf\\xe9 \\xff\\xfe"],
        ["Authorization", f"Bearer {REDACTED}"],
        ["Cookie", REDACTED],
        ["x-forward", f"Bearer {REDACTED}\\xfe"],
        ["content-type", "application/json"],
    ]
    assert request["body"] == {"input": "half an emoji \\ud83d", "api_key": REDACTED, "\\ud83d": 1}
    assert record["response"]["headers"] == [["x-resp", "\\x80"], ["set-cookie", REDACTED]]
    assert record["outcome"] == "injected: truncated (upstream said \\ud83d)"
    assert record["model"] == "gpt-5\\udcff"
    assert record["warnings"] == [f"excerpt b'\\xff' \\udcff api_key={REDACTED}"]
    assert record["notes"] == ["\\ud800"]
    assert capture.path("upstream.sse").read_bytes() == b"data: \xff\x00\n\n"


def test_binary_bodies_give_a_record_and_byte_exact_stream_files(tmp_path: Path) -> None:
    binary = bytes(range(256)) * 4
    capture = Capture(tmp_path, STARTED, "0a1b2c3d")
    for piece in chunked(binary, [1, 255, 17]):
        capture.append_upstream(piece)
        capture.append_client(piece)
    headers = [("content-type", "application/octet-stream")]
    path = capture.close(
        FlowFacts("POST", "http://h/", "HTTP/1.1", headers, binary), StreamReport("?")
    )
    assert path is not None
    assert json.loads(path.read_text())["request"]["body"] == (
        "[1024 bytes of binary data: not kept]"
    )
    assert capture.path("upstream.sse").read_bytes() == binary
    assert capture.path("client.sse").read_bytes() == binary


def test_a_request_body_bomb_is_decoded_no_further_than_the_limit() -> None:
    head, tail = b'{"input":"', b'"}'
    bomb = compressed(b"x" * 2**20, "zstd", 1024, head=head, tail=tail)  # 1 GiB of JSON
    tracemalloc.start()
    try:
        note = redact_body(bomb, "zstd", "application/json")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert note == (
        f"[{len(bomb)} bytes, content-encoding zstd: not decoded: "
        f"decodes to more than {MAX_DECODED_BODY} bytes]"
    )
    assert peak < MAX_DECODED_BODY + 32 * 2**20, peak  # the limit, not the gigabyte
