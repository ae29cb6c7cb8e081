"""Test support shipped with codex-fix (as mitmproxy ships `mitmproxy.test`): a fake LLM
backend that plays broken streams on purpose, the fault builders, a `mitmdump` runner and
a Codex CLI driver, for codex-fix's own tests and scripts and for anyone testing a client or
a setup against the faults codex-fix repairs.

* `backend`: `MockBackend`, the scenario-playing backend (`python -m
  codexfix.testing.backend` runs it); `scenario`: what it plays and records;
  `http1`, `http2`, `websocket`, `tls`, `wire`: how.
* `bodies`: bodies to play (split, compressed, a transcript's events);
  `faults`: the Responses fault matrix and the Codex CLI's faults.
* `mitmdump`: a `mitmdump` subprocess on 127.0.0.1; `codex`: `codex exec` against local
  servers only; `chatgpt`: the ChatGPT backend a ChatGPT login needs, over SSE and the
  Responses WebSocket, with the WebSocket faults.

Nothing here is imported by the addon. `data/codex-backend-gpt5-text.sse` is a copy of
`tests/fixtures/real/responses/codex-backend-gpt5-text.sse` (a real Codex backend stream;
its source is in `tests/fixtures/real/SOURCES.md`), so that the faults need no checkout.
"""
