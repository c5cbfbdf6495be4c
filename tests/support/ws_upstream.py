"""A real WebSocket echo server (the websockets library) on 127.0.0.1, served from a thread.

It echoes every message back, and records the headers of each opening
handshake so tests can see what the gateway sent upstream, and how each
WebSocket ended. The message ``CLOSE_REQUEST`` makes it close the WebSocket
itself (code 4001); it agrees to the subprotocol ``chat.v1`` when offered.
"""

import threading

from websockets.exceptions import ConnectionClosed
from websockets.sync.server import Server, ServerConnection, serve

CLOSE_REQUEST = "please close"
"""A message the server answers by closing the WebSocket with code 4001."""

class WsEchoUpstream:
    def __init__(self) -> None:
        self.handshakes: list[dict[str, list[str]]] = []
        self.ended: list[int | None] = []
        """Per WebSocket that ended: the close code received from the client, None when it had none."""
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    def _handle(self, ws: ServerConnection) -> None:
        headers: dict[str, list[str]] = {}
        for name, value in ws.request.headers.raw_items():
            headers.setdefault(name.lower(), []).append(value)
        self.handshakes.append({"path": [ws.request.path], **headers})
        try:
            for message in ws:
                if message == CLOSE_REQUEST:
                    ws.close(4001, "asked to")
                    break
                ws.send(message)
        except ConnectionClosed:
            pass
        finally:
            self.ended.append(ws.protocol.close_rcvd.code if ws.protocol.close_rcvd is not None else None)

    def __enter__(self) -> "WsEchoUpstream":
        self._server = serve(self._handle, "127.0.0.1", 0, max_size=None, compression=None,
                             select_subprotocol=lambda ws, offered: "chat.v1" if "chat.v1" in offered else None)
        self.port = self._server.socket.getsockname()[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="ws-upstream", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
        if self._thread is not None:
            self._thread.join(10)

    def config(self, name: str = "ws") -> dict:
        return {"name": name, "servers": [f"127.0.0.1:{self.port}"]}
