"""Redaction: what of a flow may reach a capture file, with every credential removed.

Headers lose credential values (Authorization keeps its scheme), URLs their userinfo and
credential query parameters, JSON bodies the values of secret-named keys at any depth, and
any text its bearer tokens and API keys. What UTF-8 cannot write (a header byte that
mitmproxy keeps as a surrogate escape, a lone surrogate from a JSON `\\ud83d`) is escaped
before redaction, so the redaction sees what is written (DESIGN.md invariant 8).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote_plus, urlsplit, urlunsplit

from ..decoding import DecodeError, decode_body

REDACTED = "[REDACTED]"
MAX_DECODED_BODY = 64 * 1024 * 1024  # a request body is decoded no further than this

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
