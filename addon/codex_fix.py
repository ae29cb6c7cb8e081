"""mitmproxy entry script: `mitmdump -s addon/codex_fix.py`.

mitmproxy runs this file as a module and puts its folder on sys.path, so the sibling
package `codexfix` imports normally. A hot reload re-executes only this file, so the
package's modules are reloaded here, leaves first; the old addon's `done()` has already
removed the HttpStream patch and the new one's `running()` installs it again.
"""

import importlib
import sys

_MODULES = (
    "codexfix.sse",
    "codexfix.reading",
    "codexfix.report",
    "codexfix.decoding",
    "codexfix.capture",
    "codexfix.failures",
    "codexfix.coercion",
    "codexfix.models.base",
    "codexfix.models.responses",
    "codexfix.models.chat",
    "codexfix.models.anthropic",
    "codexfix.dialects",
    "codexfix.dialects.base",
    "codexfix.dialects.responses",
    "codexfix.dialects.chat",
    "codexfix.dialects.anthropic",
    "codexfix.reassembly",
    "codexfix.fixer",
    "codexfix",
    "codexfix.mitm.shim",
    "codexfix.mitm.scope",
    "codexfix.mitm.stream",
    "codexfix.mitm.contentview",
    "codexfix.mitm.addon",
    "codexfix.mitm.websocket",
)

for _name in _MODULES:
    if _name in sys.modules:
        importlib.reload(sys.modules[_name])
    else:
        importlib.import_module(_name)

from codexfix.mitm.addon import CodexFix  # noqa: E402
from codexfix.mitm.contentview import SSEView  # noqa: E402
from codexfix.mitm.websocket import WebSocketTransport  # noqa: E402

addons = [CodexFix(), SSEView(), WebSocketTransport()]
