"""Captures: per flow, the SSE bodies exactly as they passed and a redacted JSON record.

Files (`codexfix_capture_dir`), named so that a directory listing sorts by time:
    <stem>.upstream.sse   the body as received from the upstream, byte for byte
    <stem>.client.sse     the body as sent to the client, byte for byte
    <stem>.json           the FlowRecord: request line, headers and decoded body, response
                          status and headers, timings, outcome, repairs, warnings, usage
with <stem> = `YYYYmmddTHHMMSS.ffffffZ-<first 8 of the flow id>` (UTC).

Secrets never reach the disk (DESIGN.md invariant 8): the record is built only through
the `redact_*` functions, which remove credential headers, credential query parameters
and userinfo, secret-named JSON keys at any depth, and bearer tokens / API keys found in
any text. Stream bodies are model output and are written as they are.

Any bytes make a record: what UTF-8 cannot write (a header byte that mitmproxy keeps as a
surrogate escape, a lone surrogate from a JSON `\\ud83d`) is escaped as text before it is
redacted, so the redaction sees what is written.

A capture must never break the stream: a write error is logged once and ends the capture
of that flow. Sans-mitmproxy.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, TypedDict
from urllib.parse import unquote_plus, urlsplit, urlunsplit

from .decoding import DecodeError, decode_body
from .report import Usage

_log = logging.getLogger("codexfix")

REDACTED = "[REDACTED]"
VERSION = 1
MAX_DECODED_BODY = 64 * 1024 * 1024  # a request body is decoded no further than this
_BUFFER = 64 * 1024

# Header / JSON key / query parameter names whose values are credentials, compared after
# lower-casing and mapping "-" to "_".
_SECRET_NAMES = frozenset(
    {
        "authorization",
        "proxy_authorization",
        "cookie",
        "set_cookie",
        "chatgpt_account_id",  # the ChatGPT account a Codex token belongs to
        "openai_organization",  # account identifiers: they are attached to bug reports
        "openai_project",
        "key",
        "api_key",
        "apikey",
        "token",
        "secret",
        "password",
        "passwd",
        "credential",
        "credentials",
    }
)
_SECRET_SUFFIXES = (
    "_token",  # access_token, refresh_token, id_token, x_auth_token (not max_tokens)
    "_secret",
    "_password",
    "api_key",  # x_api_key, openai_api_key, x_goog_api_key
    "apikey",
    "access_key",
    "secret_key",
    "private_key",
    "_credentials",
    "authorization",
    "_cookie",
)
# Signed-URL signatures (Azure SAS `sig`) are credentials in a query, not in a JSON body
# (an Anthropic thinking block's `signature` is not one).
_SECRET_QUERY_NAMES = frozenset({"sig", "signature"})

# Credentials recognizable by their shape, wherever they appear: bearer tokens, the key
# formats of the providers agents talk to, JWTs (ChatGPT access tokens), and
# `name=value` / `name: value` assignments of a secret-named variable.
_TEXT_SECRETS = re.compile(
    r"(?P<bearer>(?i:\bbearer)\s+)[A-Za-z0-9._~+/-]{16,}=*"
    r"|\b(?:sk|xai|gsk|hf|r8|ghp|gho|ghu|ghs|github_pat)[-_][A-Za-z0-9_-]{16,}"
    r"|\bAIza[0-9A-Za-z_-]{30,}"
    r"|\beyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]*"
    r"|(?P<name>\b[\w-]*(?i:api[_-]?key|secret|password|passwd|token)[\"']?\s*[=:]\s*[\"']?)"
    r"[^\s\"'&,;]{4,}"
)


def _text_secret(match: re.Match[str]) -> str:
    prefix = match.group("bearer") or match.group("name") or ""
    return prefix + REDACTED


def is_secret_name(name: str) -> bool:
    """Whether a header, JSON key or query parameter of this name holds a credential."""
    normal = name.strip().lower().replace("-", "_")
    return normal in _SECRET_NAMES or normal.endswith(_SECRET_SUFFIXES)


def redact_text(text: str) -> str:
    """`text` with every credential-shaped substring replaced."""
    return _TEXT_SECRETS.sub(_text_secret, text)


# Lone surrogates: UTF-8 cannot encode them.
_SURROGATE = re.compile("[\ud800-\udfff]")


def _escape_byte(match: re.Match[str]) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:  # Python's surrogateescape of the byte code - 0xDC00
        return f"\\x{code - 0xDC00:02x}"
    return f"\\u{code:04x}"


def _escape_char(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def writable(text: str, raw: bool = False) -> str:
    """`text` with what UTF-8 cannot write escaped: a lone surrogate as `\\uXXXX`, or, for
    `raw` text that mitmproxy decoded from bytes (header values, the URL), a byte kept as
    a surrogate escape as `\\xNN`."""
    if text.isascii():
        return text
    return _SURROGATE.sub(_escape_byte if raw else _escape_char, text)


def redact_headers(pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Credential headers keep their name (and an auth scheme), never their value."""
    out = []
    for name, value in pairs:
        name, value = writable(name, raw=True), writable(value, raw=True)
        if is_secret_name(name):
            scheme, sep, _ = value.strip().partition(" ")
            keep_scheme = sep and name.lower() in ("authorization", "proxy-authorization")
            value = f"{scheme} {REDACTED}" if keep_scheme else REDACTED
        else:
            value = redact_text(value)
        out.append((name, value))
    return out


def redact_url(url: str) -> str:
    """The URL without userinfo and without the values of credential query parameters."""
    url = writable(url, raw=True)
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact_text(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = REDACTED + "@" + netloc.rpartition("@")[2]
    query = _redact_params(parts.query)
    fragment = _redact_params(parts.fragment)  # OAuth implicit flows put tokens there
    return redact_text(urlunsplit((parts.scheme, netloc, parts.path, query, fragment)))


def _redact_params(params: str) -> str:
    """`a=1&key=x` -> `a=1&key=[REDACTED]`, leaving every other byte as it was."""
    out = []
    for param in params.split("&"):
        name, sep, _ = param.partition("=")
        plain = unquote_plus(name)
        if sep and (is_secret_name(plain) or plain.lower() in _SECRET_QUERY_NAMES):
            param = f"{name}={REDACTED}"
        out.append(param)
    return "&".join(out)


def redact_json(value: Any) -> Any:
    """A copy of a decoded JSON value with secret-named keys and credential text redacted."""
    if isinstance(value, dict):
        return {
            writable(str(key)): (
                REDACTED
                if item is not None and is_secret_name(writable(str(key)))
                else redact_json(item)
            )
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [redact_json(item) for item in value]
    if isinstance(value, str):
        return redact_text(writable(value))
    return value


def redact_body(
    body: bytes | None, content_encoding: str | None = None, content_type: str | None = None
) -> Any:
    """A request body for the record: decoded JSON (redacted), redacted text, or a note."""
    if not body:
        return None
    try:
        decoded = decode_body(body, content_encoding, MAX_DECODED_BODY)
    except DecodeError as exc:  # or TooLarge: decoding stopped at the limit
        note = f"[{len(body)} bytes, content-encoding {content_encoding}: not decoded: {exc}]"
        return writable(note, raw=True)
    try:
        return redact_json(json.loads(decoded))
    except RecursionError:
        return f"[{len(decoded)} bytes of JSON nested too deeply to redact: not kept]"
    except ValueError:
        pass
    try:
        text = decoded.decode("utf-8")
    except UnicodeDecodeError:
        return f"[{len(decoded)} bytes of binary data: not kept]"
    if content_type and "x-www-form-urlencoded" in content_type:
        text = _redact_params(text)
    return redact_text(text)


# -- the record -----------------------------------------------------------------------------


class RequestRecord(TypedDict):
    method: str
    url: str
    http_version: str
    headers: list[list[str]]
    body: Any  # decoded JSON, text, a "[...]" note, or None


class ResponseRecord(TypedDict):
    status: int
    headers: list[list[str]]


class Timings(TypedDict):
    duration_s: float | None
    ttfb_s: float | None


class UsageRecord(TypedDict):
    input_tokens: int
    cached_tokens: int
    output_tokens: int
    reasoning_tokens: int


class FilesRecord(TypedDict):
    upstream: str | None  # file name next to the record; None: no byte came
    client: str | None


class FlowRecord(TypedDict):
    """`<stem>.json`, schema version 1."""

    version: int
    flow_id: str
    started: str  # ISO 8601, UTC
    request: RequestRecord
    response: ResponseRecord | None
    protocol: str
    timings: Timings
    outcome: str | None
    model: str | None
    events: int
    bytes_in: int
    bytes_out: int
    repairs: list[str]
    warnings: list[str]
    notes: list[str]
    usage: UsageRecord | None
    files: FilesRecord


@dataclass(frozen=True)
class FlowFacts:
    """The plain values the adapter knows about a flow when it ends (nothing redacted yet)."""

    method: str
    url: str
    http_version: str
    request_headers: Sequence[tuple[str, str]]
    request_body: bytes | None  # as the client sent it (content-encoding still applied)
    protocol: str
    response_status: int | None = None
    response_headers: Sequence[tuple[str, str]] | None = None
    duration_s: float | None = None
    ttfb_s: float | None = None
    outcome: str | None = None
    model: str | None = None
    events: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    repairs: Sequence[str] = ()
    # Warning lines; an int (StreamReport.warnings, a count) is recorded as one line.
    warnings: Sequence[str] | int = ()
    notes: Sequence[str] = ()
    usage: Usage | Mapping[str, int] | None = None


def build_record(
    facts: FlowFacts, *, flow_id: str, started: float, files: FilesRecord
) -> FlowRecord:
    """The redacted record of one flow."""
    headers = {name.lower(): value for name, value in facts.request_headers}
    response: ResponseRecord | None = None
    if facts.response_status is not None:
        response = {
            "status": facts.response_status,
            "headers": _pairs(redact_headers(facts.response_headers or ())),
        }
    warnings = facts.warnings
    if isinstance(warnings, int):
        warnings = [f"{warnings} coercion warnings (see the log)"] if warnings else []
    return {
        "version": VERSION,
        "flow_id": writable(flow_id),
        "started": iso_utc(started),
        "request": {
            "method": writable(facts.method, raw=True),
            "url": redact_url(facts.url),
            "http_version": writable(facts.http_version, raw=True),
            "headers": _pairs(redact_headers(facts.request_headers)),
            "body": redact_body(
                facts.request_body, headers.get("content-encoding"), headers.get("content-type")
            ),
        },
        "response": response,
        "protocol": writable(facts.protocol),
        "timings": {"duration_s": facts.duration_s, "ttfb_s": facts.ttfb_s},
        # The upstream's words (a model name, an error message) may hold lone surrogates.
        "outcome": _text(facts.outcome),
        "model": _text(facts.model),
        "events": facts.events,
        "bytes_in": facts.bytes_in,
        "bytes_out": facts.bytes_out,
        "repairs": [redact_text(writable(str(r))) for r in facts.repairs],
        "warnings": [redact_text(writable(str(w))) for w in warnings],
        "notes": [redact_text(writable(str(n))) for n in facts.notes],
        "usage": _usage(facts.usage),
        "files": files,
    }


def _text(text: str | None) -> str | None:
    return None if text is None else redact_text(writable(text))


def _pairs(pairs: list[tuple[str, str]]) -> list[list[str]]:
    return [[name, value] for name, value in pairs]


def _usage(usage: Usage | Mapping[str, int] | None) -> UsageRecord | None:
    if usage is None:
        return None
    values = usage if isinstance(usage, Mapping) else vars(usage)

    def count(key: str) -> int:
        value = values.get(key)
        return value if isinstance(value, int) else 0

    return {
        "input_tokens": count("input_tokens"),
        "cached_tokens": count("cached_tokens"),
        "output_tokens": count("output_tokens"),
        "reasoning_tokens": count("reasoning_tokens"),
    }


def iso_utc(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="microseconds")


def capture_stem(started: float, flow_id: str) -> str:
    """`YYYYmmddTHHMMSS.ffffffZ-<flowid8>`: sortable by time, unique per flow."""
    when = datetime.fromtimestamp(started, UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    return f"{when}-{re.sub(r'[^0-9A-Za-z]', '', flow_id)[:8] or 'flow'}"


# -- the writer -----------------------------------------------------------------------------


class Capture:
    """Writes one flow's capture as it streams; never raises on I/O errors."""

    def __init__(
        self,
        directory: str | Path,
        started: float,
        flow_id: str,
        log: logging.Logger | logging.LoggerAdapter[logging.Logger] = _log,
    ) -> None:
        self.directory = Path(directory)
        self.started = started
        self.flow_id = flow_id
        self.stem = capture_stem(started, flow_id)
        self.log = log
        self._files: dict[str, IO[bytes]] = {}
        self._failed = False
        self._closed = False

    @property
    def failed(self) -> bool:
        """A write failed: the capture stopped (and said so once)."""
        return self._failed

    def path(self, suffix: str) -> Path:
        return self.directory / f"{self.stem}.{suffix}"

    def append_upstream(self, data: bytes) -> None:
        self._append("upstream", data)

    def append_client(self, data: bytes) -> None:
        self._append("client", data)

    def _append(self, which: str, data: bytes) -> None:
        if self._failed or self._closed or not data:
            return
        try:
            file = self._files.get(which)
            if file is None:  # lazily: a flow that never streams leaves no empty files
                self.directory.mkdir(parents=True, exist_ok=True)
                # Kept open across calls, closed in close(): not a `with` block.
                file = open(self.path(f"{which}.sse"), "wb", _BUFFER)  # noqa: SIM115
                self._files[which] = file
            file.write(data)
        except (OSError, ValueError) as exc:
            self._fail(exc)

    def close(self, facts: FlowFacts) -> Path | None:
        """Close the stream files and write the record; its path, or None if it failed."""
        if self._closed:
            return None
        self._closed = True
        files: FilesRecord = {
            "upstream": self.path("upstream.sse").name if "upstream" in self._files else None,
            "client": self.path("client.sse").name if "client" in self._files else None,
        }
        self._close_files()
        if self._failed:
            return None
        record = build_record(facts, flow_id=self.flow_id, started=self.started, files=files)
        path = self.path("json")
        partial = self.path("json.partial")
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            text = json.dumps(record, ensure_ascii=False, indent=2, default=str)
            partial.write_text(text + "\n", encoding="utf-8")
            # Readers (summarize.py) see a whole record or none.
            os.replace(partial, path)
        except (OSError, ValueError) as exc:
            self._fail(exc)
            return None
        return path

    def _close_files(self) -> None:
        for file in self._files.values():
            try:
                file.close()
            except (OSError, ValueError) as exc:
                self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        if not self._failed:
            self._failed = True
            self.log.warning("capture %s stopped: %s", self.stem, exc)
        if not self._closed:
            self._closed = True
            self._close_files()
