"""codex-fix: repair and inspect LLM Server-Sent-Events streams.

The core (sse, models, dialects, failures, fixer) is sans-I/O and imports nothing from
mitmproxy; `codexfix.mitm` adapts it to mitmproxy.
"""

from .failures import GraceExpired, UpstreamBroken, UpstreamEnded, UpstreamIdle
from .fixer import Limits, StreamFixer

__all__ = [
    "GraceExpired",
    "Limits",
    "StreamFixer",
    "UpstreamBroken",
    "UpstreamEnded",
    "UpstreamIdle",
]
