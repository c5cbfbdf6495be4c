"""A test server on its own event loop in a daemon thread: started, stopped, used as a context manager."""

import asyncio
import threading


class ServerThread:
    """Subclasses make their listening server in ``_listen()`` (a coroutine, run on the server's
    loop) and let go of what is open in ``_shut(loop)`` once the loop stopped. ``port`` is the
    port the OS gave (127.0.0.1)."""

    thread_name = "server"

    def __init__(self) -> None:
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    async def _listen(self) -> asyncio.AbstractServer:
        raise NotImplementedError

    def _shut(self, loop: asyncio.AbstractEventLoop) -> None:
        """After the loop stopped, on the server's thread: abort the connections still open."""

    def start(self):
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()
        if not self._ready.wait(10) or self._error:
            self.stop()
            raise RuntimeError(f"{self.thread_name} did not start: {self._error!r}")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            server = loop.run_until_complete(self._listen())
            self.port = server.sockets[0].getsockname()[1]
        except BaseException as exc:  # reported by start()
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            server.close()
            self._shut(loop)
            loop.close()
