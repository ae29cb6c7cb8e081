"""The WebSocket part of the shim: a managed relay for the sockets codex-fix repairs.

mitmproxy's WebSocket relay (`proxy/layers/websocket.py`, the same in 11.0.2 and 12.3.1)
lets an addon edit or drop a message, but not send several in place of one, not send
anything before it echoes the upstream's Close to the client, and not wake up when the
upstream goes silent. It also re-fragments an edited text message into 4,000-byte
frames that it decodes one by one (a character cut in two becomes U+FFFD). So for a
socket registered with `manage()`, the layer's events go through `_relay`, which runs
mitmproxy's relay unchanged and acts between its steps:

* after the `websocket_message` hook of each message (what every addon made of it), the
  `ManagedSocket` is told; in place of a server message it may send others, written
  whole by the client side's wsproto connection (the original is marked dropped);
* when the relay has seen the upstream's Close (or its TCP drop) and before it echoes
  it, the messages that end the request in flight go to the client;
* a `Wakeup` (asked for here; mitmproxy's relay never asks) checks the socket's
  deadline: past it, the failure goes to the client and both sides are closed as the
  relay closes them. Wake-ups also come every `_KEEPALIVE` seconds while the socket is
  open: mitmproxy 12's `tcp_timeout` counts them as activity, so an idle socket between
  requests is not cut by the proxy (as a plain relay's would be after 600 s).

Every other WebSocket runs mitmproxy's code untouched. Internals touched:
* `WebsocketLayer._handle_event` (the class attribute, `start`): wrapped, to take over
  the layer's `_handle_event` after the start of a managed socket;
* `WebsocketLayer.relay_messages` (called), `.done`, `.flow`, `.client_ws`, `.server_ws`
  (wsproto connections; `send2` makes a `SendData`), `.context.server`;
* `WebsocketMessageHook`, `WebsocketEndHook`; `commands.RequestWakeup` / `events.Wakeup`
  (`HttpLayer` routes the wake-up to the `HttpStream`, which passes it to this layer).
"""

from __future__ import annotations

import logging
import time
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Generator
from typing import Any

import wsproto.events
from mitmproxy import http, websocket
from mitmproxy.proxy import commands, events
from mitmproxy.proxy.layers.websocket import (
    WebsocketConnection,
    WebsocketEndHook,
    WebsocketLayer,
    WebsocketMessageHook,
)
from wsproto.connection import ConnectionState

log = logging.getLogger(__name__)

CommandGenerator = Generator[commands.Command, Any, None]
_ORIGINAL = "_codexfix_original_handle_event"
# Seconds between wake-ups of an open socket at the most (see the module docstring; a
# third of mitmproxy 12's `tcp_timeout` if that is less).
_KEEPALIVE = 30.0
# Characters per frame of a message codex-fix writes: clients limit frames (the Codex
# CLI's tungstenite: 16 MiB) more tightly than messages.
_FRAME_CHARS = 1 << 20
_OPEN = (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING)


class ManagedSocket(ABC):
    """What the shim drives for one managed WebSocket (messages are UTF-8 text)."""

    @property
    @abstractmethod
    def raw(self) -> bool:
        """A plain relay from here on: the shim only relays."""

    @abstractmethod
    def client_message(self, message: websocket.WebSocketMessage) -> None: ...

    @abstractmethod
    def server_message(self, message: websocket.WebSocketMessage) -> list[bytes] | None:
        """The messages to send the client in place of this one; None: this one."""

    @abstractmethod
    def server_activity(self) -> None:
        """Bytes came from the server (a ping, part of a message)."""

    @abstractmethod
    def deadline(self) -> float | None:
        """Monotonic time past which the socket must end, if ever."""

    @abstractmethod
    def expired(self) -> list[bytes]:
        """The deadline passed: the messages the client gets before both sides close."""

    @abstractmethod
    def server_closed(self, code: int, reason: str) -> list[bytes]:
        """The upstream closed (1006: dropped): the messages sent before the client's Close."""

    @abstractmethod
    def fail_open(self, exc: BaseException) -> None:
        """An internal error in the shim: relay the socket unchanged from here on."""

    @property
    @abstractmethod
    def keep(self) -> int:
        """Bytes of messages to keep on the flow for the UI (the latest; 0: none). A
        socket may live for an hour: its messages must not pile up in memory."""


_managed: weakref.WeakKeyDictionary[http.HTTPFlow, ManagedSocket] = weakref.WeakKeyDictionary()


def manage(flow: http.HTTPFlow, socket: ManagedSocket) -> None:
    """Relay this flow's WebSocket through `socket` (call from `websocket_start`)."""
    _managed[flow] = socket


def installed() -> bool:
    return hasattr(WebsocketLayer, _ORIGINAL)


def install() -> None:
    if installed():
        return
    original = WebsocketLayer._handle_event
    setattr(WebsocketLayer, _ORIGINAL, original)
    WebsocketLayer._handle_event = _make_start(original)
    log.debug("WebsocketLayer patched")


def uninstall() -> None:
    original = getattr(WebsocketLayer, _ORIGINAL, None)
    if original is None:
        return
    WebsocketLayer._handle_event = original
    delattr(WebsocketLayer, _ORIGINAL)
    log.debug("WebsocketLayer patch removed")


def _make_start(original: Callable[..., CommandGenerator]) -> Callable[..., CommandGenerator]:
    def start(self: WebsocketLayer, event: events.Event) -> CommandGenerator:
        yield from original(self, event)  # runs the websocket_start hook
        socket = _managed.pop(self.flow, None)
        if socket is not None and self._handle_event == self.relay_messages:
            relay = _Relay(self, socket)
            self._handle_event = relay.handle
            yield from relay.arm()

    return start


class _Relay:
    """The managed relay of one socket (the layer's `_handle_event` after its start)."""

    def __init__(self, layer: WebsocketLayer, socket: ManagedSocket) -> None:
        self.layer = layer
        self.socket = socket
        self.ended = False
        self.close_seen = False
        self.due: float | None = None  # when the pending wake-up fires
        self.wakeup: commands.RequestWakeup | None = None
        # mitmproxy 12 closes a client connection idle for `tcp_timeout` seconds.
        tcp_timeout = getattr(layer.context.options, "tcp_timeout", None)
        self.keepalive = _KEEPALIVE if not tcp_timeout else min(_KEEPALIVE, tcp_timeout / 3)
        self.kept = 0  # bytes of the messages on the flow
        self.counted = 0  # how many of them `kept` counts

    def handle(self, event: events.Event) -> CommandGenerator:
        if isinstance(event, events.Wakeup):
            if event.command is self.wakeup and not self.ended:
                self.due = None
                yield from self._on_wakeup()
            return  # an older wake-up, or one for a socket that has ended
        if self.ended:
            yield from self.layer.done(event)
            return
        if (
            isinstance(event, events.DataReceived)
            and event.connection == self.layer.context.server
            and not self.socket.raw
        ):
            self.socket.server_activity()
        yield from self._intercept(self.layer.relay_messages(event))
        if self.layer._handle_event == self.layer.done:  # the relay ended the socket
            self._end()
        if not self.ended:
            yield from self.arm()

    def _intercept(self, relay: CommandGenerator) -> CommandGenerator:
        """Run mitmproxy's relay, acting after each message's hook and before a Close.

        The loop every relayed command goes through: codex-fix's steps return lists of
        commands (no generator per message), and the common case (a message that leaves
        unchanged) sends nothing.
        """
        ws = self.layer.flow.websocket
        assert ws is not None
        socket = self.socket
        result = None
        while True:
            try:
                command = relay.send(result)
            except StopIteration:
                return
            if ws.timestamp_end is not None and not self.close_seen:
                self.close_seen = True
                if ws.closed_by_client is False:  # before the relay echoes the Close
                    yield from self._guarded(self._server_closed, ws)
            result = yield command
            if type(command) is WebsocketMessageHook:
                if not socket.raw:
                    yield from self._guarded(self._after_hook, ws.messages[-1])
                self._trim(ws.messages)

    def _guarded(self, step: Callable[[Any], list[commands.Command]], arg: Any) -> list[Any]:
        """Fail-open: an error in codex-fix's own step leaves the socket to the relay. (A
        step makes all its commands before any is sent: one that fails half-way sends
        none.)"""
        try:
            return step(arg)
        except Exception as exc:
            self.socket.fail_open(exc)
            return []

    def _after_hook(self, message: websocket.WebSocketMessage) -> list[commands.Command]:
        if message.dropped or message.injected:
            return []
        if message.from_client:
            self.socket.client_message(message)
            return []
        replacement = self.socket.server_message(message)
        if replacement is None:
            return []
        texts = _texts(replacement)  # (may raise: before anything is dropped or sent)
        message.drop()  # mitmproxy's relay now skips it; what replaces it goes out here
        return self._send(texts)

    def _trim(self, messages: list[websocket.WebSocketMessage]) -> None:
        """Drop the oldest messages past `keep` bytes (mitmproxy's relay holds the one it
        is relaying itself, not through the list)."""
        keep = self.socket.keep
        if not keep:
            messages.clear()
            return
        for message in messages[self.counted :]:
            self.kept += len(message.content)
        dropped = 0
        while self.kept > keep and dropped < len(messages):
            self.kept -= len(messages[dropped].content)
            dropped += 1
        del messages[:dropped]
        self.counted = len(messages)

    def _server_closed(self, ws: websocket.WebSocketData) -> list[commands.Command]:
        code, reason = ws.close_code or 1005, ws.close_reason or ""
        return self._send(_texts(self.socket.server_closed(code, reason)))

    def _on_wakeup(self) -> CommandGenerator:
        try:
            deadline = self.socket.deadline() if not self.socket.raw else None
            if deadline is None or time.monotonic() < deadline:
                yield from self.arm()
                return
            out = self._send(_texts(self.socket.expired()))
        except Exception as exc:
            self.socket.fail_open(exc)
            yield from self.arm()
            return
        yield from out
        yield from self._close(1000, "codex-fix: upstream idle")

    def _send(self, texts: list[str]) -> list[commands.Command]:
        """Messages to the client, each written whole (in frames of whole characters),
        and kept on the flow as injected messages: the flow shows what the client got."""
        client: WebsocketConnection = self.layer.client_ws
        ws = self.layer.flow.websocket
        assert ws is not None
        sends: list[commands.Command] = []
        if client.state is not ConnectionState.OPEN:
            return sends
        for text in texts:
            ws.messages.append(
                websocket.WebSocketMessage(
                    websocket.Opcode.TEXT, False, text.encode(), time.time(), injected=True
                )
            )
            for start in range(0, max(len(text), 1), _FRAME_CHARS):
                part = text[start : start + _FRAME_CHARS]
                finished = start + _FRAME_CHARS >= len(text)
                sends.append(
                    client.send2(wsproto.events.TextMessage(part, message_finished=finished))
                )
        return sends

    def _close(self, code: int, reason: str) -> CommandGenerator:
        """Close both sides as mitmproxy's relay does on a Close (it sends the Close frame
        and closes the connection right away)."""
        layer = self.layer
        ws = layer.flow.websocket
        assert ws is not None
        ws.timestamp_end = time.time()
        ws.closed_by_client = False
        ws.close_code, ws.close_reason = code, reason
        for side in (layer.server_ws, layer.client_ws):
            if side.state in _OPEN:
                yield side.send2(wsproto.events.CloseConnection(code, reason))
            yield commands.CloseConnection(side.conn)
        yield WebsocketEndHook(layer.flow)
        layer.flow.live = False
        layer._handle_event = layer.done
        self._end()

    def _end(self) -> None:
        """The socket ended: later events (a pending wake-up too) end here."""
        self.ended = True
        self.layer._handle_event = self.handle

    def arm(self) -> CommandGenerator:
        """A wake-up by the socket's deadline, or the keepalive step, unless one is due
        at or before it."""
        now = time.monotonic()
        try:
            deadline = None if self.socket.raw else self.socket.deadline()
        except Exception as exc:
            self.socket.fail_open(exc)
            deadline = None
        keepalive = now + self.keepalive
        wake = keepalive if deadline is None else min(deadline, keepalive)
        if self.due is not None and self.due <= wake:
            return
        self.due = wake
        self.wakeup = commands.RequestWakeup(max(wake - now, 0.001))
        yield self.wakeup


def _texts(messages: list[bytes]) -> list[str]:
    """The messages as text, all decoded before the first is sent: wsproto's deflate
    context advances with each frame it writes, so a frame must never be written and
    then not sent."""
    return [content.decode() for content in messages]
