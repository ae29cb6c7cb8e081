"""codex-fix's content views for mitmweb and the mitmproxy console (mitmproxy 11 and 12).

* "SSE" shows a body as the client received it, "SSE upstream" as the upstream sent it
  (`contentview_sse`);
* "Responses event" shows a message of a Codex WebSocket as the line its event gets in
  "SSE" (`contentview_websocket`).

Each is chosen by default only for what codex-fix handled (and "SSE" for any event
stream). Both mitmproxy versions pass a WebSocket message's view the flow and the
message (`websocket_message`), with no content type and no HTTP message.

mitmproxy 11 wants `contentviews.View` instances (`__call__` returns styled lines);
mitmproxy 12 wants `Contentview`s (`prettify` returns text) and deprecates `View`
(subclassing it warns), so the 11 classes are made only when 11 is running.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, cast

from mitmproxy import contentviews, flow, http
from mitmproxy.websocket import WebSocketMessage

from . import contentview_websocket
from .contentview_sse import Line, codexfix_info, render

# Above mitmproxy's own views (JSON 1, GraphQL 2, raw 0.1) for streams codex-fix
# handled; just above JSON for any other event stream.
PRIORITY_MATCHED = 3.0
PRIORITY_SSE = 1.5


class _Metadata(Protocol):
    """The part of mitmproxy 12's `contentviews.Metadata` the views read."""

    @property
    def flow(self) -> flow.Flow | None: ...
    @property
    def content_type(self) -> str | None: ...
    @property
    def http_message(self) -> http.Message | None: ...
    @property
    def websocket_message(self) -> WebSocketMessage | None: ...


@dataclass(frozen=True)
class ViewInput:
    """What the views read of the metadata either mitmproxy version passes."""

    flow: flow.Flow | None = None
    content_type: str | None = None
    http_message: http.Message | None = None
    websocket_message: WebSocketMessage | None = None


def render_priority(
    content_type: str | None, f: flow.Flow | None, message: http.Message | None
) -> float:
    if message is not None and not isinstance(message, http.Response):
        return 0.0
    matched = codexfix_info(f) is not None
    if content_type == "text/event-stream":
        return PRIORITY_MATCHED if matched else PRIORITY_SSE
    if content_type is None and matched and message is not None:
        return PRIORITY_MATCHED  # the Codex backend may answer SSE without a content-type
    return 0.0


# -- the views, in mitmproxy 12's API -----------------------------------------------------


class CodexFixContentview(ABC):
    """A view (mitmproxy 12 `Contentview`, a structural protocol) whose styled lines
    mitmproxy 11 shows as they are (`legacy_view`)."""

    name: ClassVar[str]
    syntax_highlight = "none"

    @abstractmethod
    def lines(self, data: bytes, meta: ViewInput) -> tuple[str, list[Line]]:
        """The description (mitmproxy 11 shows it) and the styled lines."""

    def priority(self, data: bytes, meta: ViewInput) -> float:
        return -1.0  # chosen by name only

    def prettify(self, data: bytes, metadata: _Metadata) -> str:
        _, lines = self.lines(data, _view_input(metadata))
        return "\n".join(text for _, text in lines)

    def render_priority(self, data: bytes, metadata: _Metadata) -> float:
        return self.priority(data, _view_input(metadata))

    def __lt__(self, other: object) -> bool:
        return self.name < str(getattr(other, "name", ""))


def _view_input(metadata: _Metadata) -> ViewInput:
    return ViewInput(
        metadata.flow, metadata.content_type, metadata.http_message, metadata.websocket_message
    )


class SSEContentview(CodexFixContentview):
    """The client's SSE body."""

    name = "SSE"

    def lines(self, data: bytes, meta: ViewInput) -> tuple[str, list[Line]]:
        return render(data, meta.flow)

    def priority(self, data: bytes, meta: ViewInput) -> float:
        return render_priority(meta.content_type, meta.flow, meta.http_message)


class SSEUpstreamContentview(CodexFixContentview):
    """The upstream's SSE body as codex-fix received it."""

    name = "SSE upstream"

    def lines(self, data: bytes, meta: ViewInput) -> tuple[str, list[Line]]:
        return render(data, meta.flow, upstream=True)


class ResponsesEventContentview(CodexFixContentview):
    """A message of a Codex WebSocket: its event's line."""

    name = "Responses event"

    def lines(self, data: bytes, meta: ViewInput) -> tuple[str, list[Line]]:
        return contentview_websocket.render_message(data, meta.flow, meta.websocket_message)

    def priority(self, data: bytes, meta: ViewInput) -> float:
        if contentview_websocket.is_event(meta.flow, meta.websocket_message):
            return PRIORITY_MATCHED
        return -1.0


# -- mitmproxy 11 -------------------------------------------------------------------------


def legacy_view(view: CodexFixContentview) -> contentviews.View:
    """`view` in mitmproxy 11's `View` API."""

    class LegacyView(contentviews.View):
        name: ClassVar[str] = view.name

        def __call__(
            self,
            data: bytes,
            *,
            content_type: str | None = None,
            flow: flow.Flow | None = None,
            http_message: http.Message | None = None,
            websocket_message: WebSocketMessage | None = None,
            **unknown_metadata: Any,
        ) -> tuple[str, Iterator[list[tuple[str, str | bytes]]]]:
            meta = ViewInput(flow, content_type, http_message, websocket_message)
            description, lines = view.lines(data, meta)
            return description, iter([[line] for line in lines])

        def render_priority(
            self,
            data: bytes,
            *,
            content_type: str | None = None,
            flow: flow.Flow | None = None,
            http_message: http.Message | None = None,
            websocket_message: WebSocketMessage | None = None,
            **unknown_metadata: Any,
        ) -> float:
            meta = ViewInput(flow, content_type, http_message, websocket_message)
            return view.priority(data, meta)

    return LegacyView()


# -- the addon ----------------------------------------------------------------------------


class SSEView:
    """Registers codex-fix's views while codex-fix is loaded."""

    def __init__(self) -> None:
        self._legacy: list[contentviews.View] = []

    def load(self, loader: Any) -> None:
        views = [SSEContentview(), SSEUpstreamContentview(), ResponsesEventContentview()]
        if hasattr(contentviews, "Contentview"):  # mitmproxy 12
            # Registering by name replaces the view of a previous load (hot reload).
            for view in views:
                contentviews.add(cast(Any, view))
            return
        api: Any = contentviews  # 11's signatures: Any keeps mypy quiet on either version
        for view in views:
            legacy = legacy_view(view)
            stale = api.get(legacy.name)
            if stale is not None:  # left by an instance whose done() did not run
                api.remove(stale)
            api.add(legacy)
            self._legacy.append(legacy)

    def done(self) -> None:
        # mitmproxy 12 has no way to unregister a view (`contentviews.remove` is a no-op
        # there); the next load replaces it by name.
        api: Any = contentviews
        for legacy in self._legacy:
            if legacy in api.views:
                api.remove(legacy)
        self._legacy.clear()
