"""What the read-back of every protocol shares: the lines of an unknown protocol's events,
and small helpers that turn what an event holds into short text."""

from __future__ import annotations

import json
from typing import Any

from ..report import Usage
from .result import Json, Reassembly

EXCERPT_LENGTH = 48


class Builder:
    """Unknown protocol: event lines only."""

    def default_name(self, obj: Json) -> str:
        return "error" if "error" in obj else "?"

    def event(self, name: str, obj: Json, result: Reassembly, data: bytes) -> str:
        if name == "error" or "error" in obj:
            return self.error(obj, result)
        return keys_text(obj)

    def error(self, obj: Json, result: Reassembly) -> str:
        nested = obj.get("error")
        places = [nested, obj] if isinstance(nested, dict) else [obj]
        label = first_str(places, "code") or first_str(places, "type") or "error"
        text = f"{label}: {first_str(places, 'message') or '-'}"
        result.errors.append(text)
        return text

    def finish(self, result: Reassembly) -> None:
        return None


def location(obj: Json) -> str:
    parts = [str(obj[k]) for k in ("output_index", "content_index") if isinstance(obj.get(k), int)]
    where = "out " + "/".join(parts) if parts else ""
    if isinstance(obj.get("summary_index"), int):
        where += f" summary {obj['summary_index']}"
    return where


def item_arguments(item: Json) -> str:
    for key in ("arguments", "input"):
        if isinstance(item.get(key), str):
            return str(item[key])
    for key in ("action", "operation"):  # local_shell_call, web_search_call, apply_patch_call
        if isinstance(item.get(key), dict):
            return json.dumps(item[key], ensure_ascii=False)
    return ""


def usage_text(usage: Usage | None) -> str:
    if usage is None:
        return ""
    return (
        f"usage in:{usage.input_tokens} cached:{usage.cached_tokens} "
        f"out:{usage.output_tokens} reasoning:{usage.reasoning_tokens}"
    )


def quote(text: str) -> str:
    """A short, one-line, quoted excerpt of streamed text."""
    return json.dumps(excerpt(text), ensure_ascii=False)


def excerpt(text: str) -> str:
    return text if len(text) <= EXCERPT_LENGTH else text[: EXCERPT_LENGTH - 1] + "…"


def keys_text(obj: Json) -> str:
    return excerpt("keys: " + ", ".join(str(k) for k in obj))


def first_str(places: list[Any], key: str) -> str | None:
    for place in places:
        if isinstance(place, dict) and isinstance(place.get(key), str) and place[key]:
            return str(place[key])
    return None


def as_dict(value: object) -> Json:
    return value if isinstance(value, dict) else {}


def as_list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def as_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def as_int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
