"""The protocol registry (one table) and the typed outcome of a stream."""

from __future__ import annotations

import re

import pytest
from mitmproxy import flowfilter
from mitmproxy.test import tflow

from codexfix.mitm.scope import DEFAULT_FILTER
from codexfix.mitm.websocket import RESPONSES_PATH
from codexfix.protocols import SPECS, Protocol, protocol_for
from codexfix.report import Ending, Outcome


def test_every_protocol_has_one_row_and_its_endpoints_are_plain_paths() -> None:
    assert set(SPECS) == set(Protocol)
    for protocol, spec in SPECS.items():
        assert spec.protocol is protocol
        for path in spec.endpoints:  # used as regex alternatives: nothing to escape
            assert re.fullmatch(r"[/a-z0-9-]+", path), path
            assert path.endswith(spec.path_ending) or spec.path_ending.endswith(path)


@pytest.mark.parametrize(
    ("url", "matched"),
    [
        ("https://chatgpt.com/backend-api/codex/responses", True),
        ("https://api.openai.com/v1/responses?x=1", True),
        ("https://openrouter.ai/api/v1/chat/completions", True),
        ("https://api.anthropic.com/v1/messages", True),
        ("https://api.openai.com/v1/responses/resp_1", False),
        ("https://api.openai.com/v1/embeddings", False),
    ],
)
def test_the_default_filter_is_the_registrys_endpoints(url: str, matched: bool) -> None:
    flt = flowfilter.parse(DEFAULT_FILTER)
    flow = tflow.tflow()
    flow.request.url = url
    flow.request.method = "POST"
    assert bool(flt(flow)) is matched
    path = url.split("://", 1)[1].partition("/")[2]
    assert (RESPONSES_PATH.search("/" + path) is not None) is (
        matched and protocol_for("/" + path) is Protocol.RESPONSES
    )


@pytest.mark.parametrize(
    ("path", "protocol"),
    [
        ("/backend-api/codex/responses", Protocol.RESPONSES),
        ("/openai/responses/", Protocol.RESPONSES),
        ("/openai/deployments/gpt/chat/completions?api-version=1", Protocol.CHAT),
        ("/v1/messages", Protocol.ANTHROPIC),
        ("/v1/complete", None),
    ],
)
def test_a_request_path_names_its_protocol(path: str, protocol: Protocol | None) -> None:
    assert protocol_for(path) is protocol


def test_an_outcome_reads_as_it_did_and_counts_without_flow_detail() -> None:
    assert str(Outcome(Ending.COMPLETED)) == "completed"
    assert str(Outcome(Ending.INJECTED, "truncated")) == "injected: truncated"
    aborted = Outcome(Ending.ABORTED, "Client disconnected.")
    assert str(aborted) == "aborted: Client disconnected." and aborted.kind == "aborted"
    assert not aborted.terminal and Outcome(Ending.ERROR, "overloaded").terminal
