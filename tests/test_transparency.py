"""Invariant 1 and 2: healthy real streams leave byte-identical, however they are chunked.

Every transcript of the three protocols, with the protocol given (as the request path
gives it) and told from the first event. One transcript is not healthy: Groq's ends
with an in-band `event: error` and no `[DONE]`; it passes byte-identical and gets the
`[DONE]` the protocol ends with.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from codexfix import UpstreamEnded
from codexfix.dialects.responses import TERMINALS
from codexfix.report import responses_usage

from support.transcripts import ALL, RESPONSES, chunked, events, new_fixer

DONE = b"data: [DONE]\n\n"
ENDS_WITHOUT_DONE = "groq-gpt-oss-midstream-event-error.sse"
ids = [path.name for _, path in ALL]


def run(protocol: str | None, pieces: list[bytes]) -> bytes:
    fixer = new_fixer(protocol=protocol)
    out = b"".join(fixer.feed(piece, 0.0) for piece in pieces)
    out += fixer.finish(UpstreamEnded())
    assert not fixer.report.repairs and fixer.report.warnings == 0, fixer.report
    return out


def expected(path: Path) -> bytes:
    data = path.read_bytes()
    return data + DONE if path.name == ENDS_WITHOUT_DONE else data


@pytest.mark.parametrize("told", [True, False], ids=["by-path", "by-first-event"])
@pytest.mark.parametrize(("protocol", "path"), ALL, ids=ids)
def test_transcript_is_byte_identical_in_one_piece(protocol: str, path: Path, told: bool) -> None:
    fixer = new_fixer(protocol=protocol if told else None)
    out = fixer.feed(path.read_bytes(), 0.0) + fixer.finish(UpstreamEnded())
    assert out == expected(path)
    assert fixer.report.protocol == protocol
    assert not fixer.report.repairs and fixer.report.warnings == 0, fixer.report


@pytest.mark.parametrize(("protocol", "path"), ALL, ids=ids)
def test_transcript_is_byte_identical_byte_by_byte(protocol: str, path: Path) -> None:
    data = path.read_bytes()
    assert run(protocol, [data[i : i + 1] for i in range(len(data))]) == expected(path)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize(("protocol", "path"), ALL, ids=ids)
def test_transcript_is_byte_identical_in_random_chunks(
    protocol: str, path: Path, seed: int
) -> None:
    data = path.read_bytes()
    rng = random.Random(f"{path.name}-{seed}")
    sizes = [rng.choice([1, 2, 5, 17, 100, 1500, 16384]) for _ in range(64)]
    assert run(protocol, chunked(data, sizes)) == expected(path)


@pytest.mark.parametrize(("protocol", "path"), ALL, ids=ids)
def test_outcome_is_the_upstream_terminal(protocol: str, path: Path) -> None:
    fixer = new_fixer(protocol=protocol)
    fixer.feed(path.read_bytes(), 0.0)
    fixer.finish(UpstreamEnded())
    outcome = {
        "openai-error-then-response-failed.sse": "failed",
        ENDS_WITHOUT_DONE: "error: invalid_request",  # tool_use_failed
    }.get(path.name, "completed")
    assert str(fixer.report.outcome) == outcome


@pytest.mark.parametrize("path", RESPONSES, ids=lambda p: p.name)
def test_report_reads_the_terminal_as_its_json_says(path: Path) -> None:
    """A healthy terminal is read from its validated model, never decoded again: the
    model, usage and outcome must be what the terminal's JSON holds."""
    fixer = new_fixer()
    fixer.feed(path.read_bytes(), 0.0)
    fixer.finish(UpstreamEnded())
    [terminal] = [e for e in events(path.read_bytes()) if e != "[DONE]" and e["type"] in TERMINALS]
    response = terminal["response"]
    assert str(fixer.report.outcome) == terminal["type"].removeprefix("response.")
    assert fixer.report.model == response.get("model")
    usage = response.get("usage")
    assert fixer.report.usage == (responses_usage(usage) if usage else None)
