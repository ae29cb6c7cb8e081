"""What only the tests use: the mitmdump harness (`harness`), the Codex CLIs of tests/codex
(`codex`), the real transcripts and a fixer for them (`transcripts`), event builders
(`events`), an independent reading of the SSE spec (`sse_oracle`) and the hostile values
the fuzz tests send (`hostile`). What scripts use too is in `codexfix.testing`.
"""
