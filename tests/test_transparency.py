"""Invariant 1 and 2: healthy real streams leave byte-identical, however they are chunked."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from codexfix import UpstreamEnded

from transcripts import RESPONSES, chunked, new_fixer


def run(pieces: list[bytes]) -> bytes:
    fixer = new_fixer()
    out = b"".join(fixer.feed(piece, 0.0) for piece in pieces)
    out += fixer.finish(UpstreamEnded())
    assert not fixer.report.repairs and fixer.report.warnings == 0, fixer.report
    return out


@pytest.mark.parametrize("path", RESPONSES, ids=lambda p: p.name)
def test_responses_transcript_is_byte_identical_in_one_piece(path: Path) -> None:
    data = path.read_bytes()
    assert run([data]) == data


@pytest.mark.parametrize("path", RESPONSES, ids=lambda p: p.name)
def test_responses_transcript_is_byte_identical_byte_by_byte(path: Path) -> None:
    data = path.read_bytes()
    assert run([data[i : i + 1] for i in range(len(data))]) == data


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("path", RESPONSES, ids=lambda p: p.name)
def test_responses_transcript_is_byte_identical_in_random_chunks(path: Path, seed: int) -> None:
    data = path.read_bytes()
    rng = random.Random(f"{path.name}-{seed}")
    sizes = [rng.choice([1, 2, 5, 17, 100, 1500, 16384]) for _ in range(64)]
    assert run(chunked(data, sizes)) == data


@pytest.mark.parametrize("path", RESPONSES, ids=lambda p: p.name)
def test_outcome_is_the_upstream_terminal(path: Path) -> None:
    fixer = new_fixer()
    fixer.feed(path.read_bytes(), 0.0)
    fixer.finish(UpstreamEnded())
    expected = "failed" if "error-then-response-failed" in path.name else "completed"
    assert fixer.report.outcome == expected
