"""The proxy and the read-back agree (issue 11): for every real Responses transcript and
every fault, what the proxy's dialect reports of a stream equals what the read-back (the
content view, replay) reads from the bytes the client got: the outcome, the error code,
the usage, the model and the text of every item.

Both sides are the one accumulator (`accumulate.responses`), fed by different consumers:
the dialect with the upstream's events, the read-back with the client's.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from codexfix.accumulate.responses import ResponsesAccumulator
from codexfix.dialects.responses import ResponsesDialect
from codexfix.failures import EndCause, UpstreamBroken, UpstreamEnded, UpstreamIdle
from codexfix.models.responses import RESPONSES_EVENT
from codexfix.reading import read_event
from codexfix.reassembly import reassemble
from codexfix.report import Ending
from codexfix.sse import SSEFramer
from codexfix.testing.faults import responses_faults

from support.transcripts import RESPONSES, new_fixer


def _cases() -> dict[str, tuple[bytes, EndCause]]:
    cases: dict[str, tuple[bytes, EndCause]] = {}
    for path in RESPONSES:
        data = path.read_bytes()
        cases[f"{path.stem}"] = (data, UpstreamEnded())
        for share in (3, 2):  # cut a third and half way: mid-stream, mid-event
            cut = data[: len(data) // share]
            cases[f"{path.stem} cut 1/{share}"] = (cut, UpstreamBroken("peer closed"))
        cases[f"{path.stem} stall"] = (data[: len(data) // 2], UpstreamIdle(240.0))
    for name, fault in responses_faults().items():
        ending = fault.scenario.end
        cause: EndCause = UpstreamEnded()
        if ending in ("cut", "drop"):
            cause = UpstreamBroken("peer closed")
        elif ending == "stall":
            cause = UpstreamIdle(240.0)
        cases[f"fault {name}"] = (b"".join(fault.scenario.parts), cause)
    return cases


CASES = _cases()


def _texts(items: list[dict[str, Any]]) -> list[str]:
    """The text of every message item, part by part."""
    return [
        part.get("text") or part.get("refusal") or ""
        for item in items
        if item.get("type") == "message"
        for part in item.get("content") or []
        if isinstance(part, dict)
    ]


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_proxy_and_the_read_back_read_a_stream_alike(name: str) -> None:
    upstream, cause = CASES[name]
    fixer = new_fixer()
    client = fixer.feed(upstream, 0.0) + fixer.finish(cause)
    dialect = fixer.dialect
    assert isinstance(dialect, ResponsesDialect)
    state, report = dialect.state, fixer.report
    result = reassemble(client, "responses")

    # What the proxy reports is the terminal the client read.
    assert report.outcome is not None and state.terminal is not None
    injected = report.outcome.ending is Ending.INJECTED
    assert result.outcome == ("failed" if injected else str(report.outcome))
    assert result.outcome == state.terminal.removeprefix("response.")
    assert report.usage == result.usage
    assert report.model == result.model
    failure = "{}: {}".format(*state.failure) if state.failure else None
    error = "{}: {}".format(*state.error) if state.error else None
    assert [e for e in (error, failure) if e] == result.errors
    # The items the proxy holds (done, rebuilt from deltas, or listed by the terminal) are
    # the items the client holds in the end, however it reads them: from the done events
    # (the Codex CLI) or from the terminal's output (openai-python, openai-node). An
    # injected failure lists the finished items and the text of those in progress.
    read_back = _read(client)
    assert read_back.items() == result.items
    done = [item for i in sorted(read_back.done) if (item := read_back.item(i))]
    listed = [item for item in read_back.terminal_output() if isinstance(item, dict)]
    if state.terminal == "response.completed":
        held = list(state.items().values())
        assert _texts(done) == _texts(held)
        if "output" in report.repairs:  # else the output is the upstream's, as it came
            assert _texts(listed) == _texts(held)
    else:
        held = [item for i in sorted(state.done) if (item := state.item(i))]
        assert _texts(done) == _texts(held)
        if injected:  # the finished items, and the text of those in progress
            assert _texts(listed) == _texts(list(state.items().values()))


def _read(body: bytes) -> ResponsesAccumulator:
    """The client's events through the one reading, as the read-back feeds it."""
    state = ResponsesAccumulator(keep_deltas=True)
    framer = SSEFramer()
    for frame in framer.feed(body) + framer.close():
        if frame.data is None or frame.data == b"[DONE]":
            continue
        try:
            state.feed(RESPONSES_EVENT.validate_json(frame.data), frame.data)
        except ValidationError:
            obj = read_event(frame.data).obj
            if obj is not None:
                state.feed_object(obj, frame.data)
    return state
