"""scripts/replay.py and scripts/summarize.py, run as a user runs them."""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from codexfix import Limits, StreamFixer, UpstreamBroken
from codexfix.capture import Capture, FlowFacts
from codexfix.report import StreamReport, Usage

from support.transcripts import FIXTURES, frames

REPO_ROOT = Path(__file__).resolve().parent.parent
REPLAY = REPO_ROOT / "scripts" / "replay.py"
SUMMARIZE = REPO_ROOT / "scripts" / "summarize.py"
CODEX = FIXTURES / "responses" / "codex-backend-gpt5-text.sse"
CHAT = FIXTURES / "chat" / "openai-gpt4o-parallel-tool-calls.sse"
ANTHROPIC = FIXTURES / "anthropic" / "claude-sonnet4-text-then-2-tool-use.sse"
LOG = logging.LoggerAdapter(logging.getLogger("codexfix.test"), {})


def run(script: Path, *args: object) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, str(script), *map(str, args)],
        capture_output=True,
        cwd=REPO_ROOT,
        timeout=60,
        check=False,
    )


# -- replay -----------------------------------------------------------------------------------


def test_replay_of_a_cut_transcript_prints_the_client_stream_with_the_injected_failure() -> None:
    transcript = CODEX.read_bytes()
    cut = transcript.index(b"event: response.output_text.delta") + 20
    done = run(REPLAY, CODEX, "--cut-at", cut)
    assert done.returncode == 0, done.stderr

    fixer = StreamFixer("responses", Limits(), LOG, now=0.0)
    expected = fixer.feed(transcript[:cut], 0.0) + fixer.finish(
        UpstreamBroken(f"replay cut at {cut}")
    )
    assert done.stdout == expected
    # Independently of the core: the complete frames, byte for byte, then the failure.
    complete = transcript[: transcript.rindex(b"\n\n", 0, cut) + 2]
    assert done.stdout.startswith(complete)
    *injected, last = frames(done.stdout[len(complete) :])
    assert last == b"data: [DONE]\n\n"
    assert len(injected) == 1 and injected[0].startswith(b"event: response.failed\n")
    failed = json.loads(injected[0].split(b"data: ", 1)[1])
    assert failed["response"]["error"] == {
        "code": "server_error",
        "message": "codex-fix: upstream closed the stream before response.completed "
        f"(replay cut at {cut})",
    }

    stderr = done.stderr.decode()
    assert "WARNING codexfix: injected response.failed (server_error)" in stderr
    assert "outcome=injected: truncated" in stderr
    assert "note: dropped incomplete trailing event (20 bytes)" in stderr


def test_replay_of_a_healthy_transcript_is_byte_identical_whatever_the_chunk_size() -> None:
    for size in ("1", "1024", "1000000"):
        done = run(REPLAY, CODEX, "--chunk-size", size)
        assert done.returncode == 0
        assert done.stdout == CODEX.read_bytes()
        assert "outcome=completed" in done.stderr.decode()
        assert "tokens=in:2239 cached:2176 out:15 reasoning:0" in done.stderr.decode()


def test_replay_stall_ends_with_an_idle_failure() -> None:
    transcript = CODEX.read_bytes()
    cut = transcript.index(b"event: response.completed")
    done = run(REPLAY, CODEX, "--cut-at", cut, "--stall")
    assert done.returncode == 0
    assert done.stdout.startswith(transcript[:cut])
    assert b"codex-fix: upstream sent nothing for 240.0s before response.completed" in done.stdout
    assert "outcome=injected: idle" in done.stderr.decode()


def test_replay_stall_after_the_terminal_ends_by_the_grace_period() -> None:
    done = run(REPLAY, CODEX, "--stall")
    assert done.returncode == 0
    # The upstream held the stream open after its terminal: the proxy ends it, with [DONE].
    assert done.stdout == CODEX.read_bytes() + b"data: [DONE]\n\n"
    assert "outcome=completed" in done.stderr.decode()


def test_replay_chat_transcript_passes_through() -> None:
    done = run(REPLAY, CHAT)
    assert done.returncode == 0, done.stderr
    assert done.stdout == CHAT.read_bytes()
    assert "protocol=chat" in done.stderr.decode()


def test_replay_anthropic_cut_ends_with_an_error_event() -> None:
    cut = ANTHROPIC.read_bytes().index(b"event: content_block_stop")
    done = run(REPLAY, ANTHROPIC, "--cut-at", cut)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(ANTHROPIC.read_bytes()[:cut])
    assert b"event: error\n" in done.stdout[cut:]
    assert b"[DONE]" not in done.stdout


def test_replay_guesses_the_protocol_of_a_capture_from_its_record(tmp_path: Path) -> None:
    capture = Capture(tmp_path, 1758750000.0, "0a1b2c3d")
    capture.append_upstream(CODEX.read_bytes())
    flow = FlowFacts("POST", "http://h/v1/responses", "HTTP/1.1", [], None)
    capture.close(flow, StreamReport("responses"))
    record = json.loads(capture.path("json").read_text())
    record["protocol"] = "responses-from-record"  # proves the record was read
    capture.path("json").write_text(json.dumps(record))
    done = run(REPLAY, capture.path("upstream.sse"))
    assert done.returncode == 2
    assert "protocol 'responses-from-record' is not supported" in done.stderr.decode()


def test_replay_guesses_the_protocol_from_folder_or_events(tmp_path: Path) -> None:
    neutral = tmp_path / "body.sse"
    shutil.copy(CODEX, neutral)
    assert "protocol=responses" in run(REPLAY, neutral).stderr.decode()
    odd = tmp_path / "body.txt"
    odd.write_bytes(b": nothing here\n\n")
    done = run(REPLAY, odd)
    assert done.returncode == 2
    assert "cannot tell the protocol" in done.stderr.decode()
    assert run(REPLAY, odd, "--protocol", "responses").returncode == 0


# -- summarize --------------------------------------------------------------------------------


def capture(
    directory: Path,
    started: float,
    flow_id: str,
    *,
    outcome: str,
    duration_s: float | None = None,
    warnings: tuple[str, ...] = (),
    **report: Any,
) -> None:
    c = Capture(directory, started, flow_id)
    c.append_upstream(b"data: {}\n\n")
    facts = FlowFacts(
        method="POST",
        url="https://chatgpt.com/backend-api/codex/responses",
        http_version="HTTP/2.0",
        request_headers=[("authorization", "Bearer secret-secret-secret-secret")],
        request_body=b'{"model": "gpt-5"}',
        response_status=200,
        duration_s=duration_s,
    )
    stream = StreamReport("responses", **report)
    assert c.close(facts, stream, outcome=outcome, warnings=warnings) is not None


def test_summarize_prints_a_table_by_time_and_totals(tmp_path: Path) -> None:
    base = 1758750000.0
    capture(
        tmp_path,
        base + 60,
        "bbbbbbbb",
        model="gpt-5",
        outcome="injected: truncated",
        repairs=["output", "id"],
        duration_s=9.5,
        usage=Usage(1000, 500, 40, 10),
    )
    capture(
        tmp_path,
        base,
        "aaaaaaaa",
        model="gpt-5-codex",
        outcome="completed",
        duration_s=3.0,
        usage=Usage(2239, 2176, 15, 0),
        warnings=("coercion failed: x",),
    )
    capture(tmp_path, base + 120, "cccccccc", model="gpt-5", outcome="completed")
    (tmp_path / "broken.json").write_text("{not json")
    (tmp_path / "other.json").write_text('{"version": 99}')

    done = run(SUMMARIZE, tmp_path)
    assert done.returncode == 0
    lines = done.stdout.decode().splitlines()
    assert [re.split(r"\s{2,}", line) for line in lines[:4]] == [
        ["time (UTC)", "model", "outcome", "repairs", "tokens in", "tokens out", "duration"],
        ["2025-09-24 21:40:00", "gpt-5-codex", "completed", "-", "2239", "15", "3.00s"],
        ["2025-09-24 21:41:00", "gpt-5", "injected: truncated", "output,id", "1000", "40", "9.50s"],
        ["2025-09-24 21:42:00", "gpt-5", "completed", "-", "0", "0", "-"],
    ]
    assert lines[5:] == [
        "flows: 3",
        "outcomes: completed 2, injected: truncated 1",
        "repairs: output 1, id 1",
        "warnings: 1",
        "tokens: in 3239 (cached 2676), out 55 (reasoning 10)",
        "duration: 12.50s",
    ]
    assert done.stderr.decode().splitlines() == [
        "summarize: skipped broken.json: not JSON: Expecting property name enclosed in double "
        "quotes: line 1 column 2 (char 1)",
        "summarize: skipped other.json: not a codex-fix capture record (version 1)",
    ]

    machine = json.loads(run(SUMMARIZE, tmp_path, "--json").stdout)
    assert [row["outcome"] for row in machine["flows"]] == [
        "completed",
        "injected: truncated",
        "completed",
    ]
    assert machine["totals"]["input_tokens"] == 3239
    assert machine["totals"]["outcomes"] == {"completed": 2, "injected: truncated": 1}
    assert len(machine["skipped"]) == 2


def test_summarize_reports_a_record_that_does_not_validate_and_goes_on(tmp_path: Path) -> None:
    capture(tmp_path, 1758750000.0, "aaaaaaaa", model="gpt-5", outcome="completed")
    capture(tmp_path, 1758750060.0, "bbbbbbbb", model="gpt-5", outcome="completed")
    first, second = sorted(tmp_path.glob("*.json"))
    record = json.loads(first.read_text())
    record["usage"] = {"input_tokens": "many"}
    del record["files"]
    first.write_text(json.dumps(record))

    done = run(SUMMARIZE, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr.decode().splitlines() == [
        f"summarize: skipped {first.name}: invalid record: usage.input_tokens: Input should be "
        "a valid integer, unable to parse string as an integer (and 1 more)"
    ]
    assert "flows: 1" in done.stdout.decode().splitlines()
    machine = json.loads(run(SUMMARIZE, tmp_path, "--json").stdout)
    assert [row["file"] for row in machine["flows"]] == [second.name]


def test_summarize_of_an_empty_or_missing_directory(tmp_path: Path) -> None:
    done = run(SUMMARIZE, tmp_path)
    assert done.returncode == 0
    assert "flows: 0" in done.stdout.decode()
    assert run(SUMMARIZE, tmp_path / "missing").returncode == 2
