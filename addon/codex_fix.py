"""mitmproxy entry script: `mitmdump -s addon/codex_fix.py`.

mitmproxy runs this file as a module and puts its folder on sys.path, so the sibling
package `codexfix` imports normally. A hot reload re-executes only this file, so the
package's modules are loaded afresh here; the old addon's `done()` has already removed
the HttpStream patch and the new one's `running()` installs it again.
"""

import sys

# A hot reload: forget every module of the package, so that the imports below load the
# current code, each module after the ones it imports (no list to keep up to date).
for _name in [name for name in sys.modules if name.partition(".")[0] == "codexfix"]:
    del sys.modules[_name]

from codexfix.mitm.addon import CodexFix  # noqa: E402
from codexfix.mitm.contentview import SSEView  # noqa: E402
from codexfix.mitm.websocket import WebSocketTransport  # noqa: E402

_fix = CodexFix()
addons = [_fix, SSEView(), WebSocketTransport(_fix)]
