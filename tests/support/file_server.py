"""``python -m http.server`` as a real upstream process that a test can kill and start again on the
same port; its request log says how many requests it served."""

import subprocess
import sys

import httpx

from tests.support.wait import wait_until


class FileServer:
    """Serves ``directory`` on 127.0.0.1:``port``; HTTP/1.0, so every request is a new connection."""

    def __init__(self, directory, port: int) -> None:
        self.directory, self.port = directory, port
        self.log = directory / f"server-{port}.log"
        self.proc: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> "FileServer":
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "http.server", str(self.port), "--bind", "127.0.0.1"],
                                         cwd=self.directory, stdout=subprocess.DEVNULL, stderr=log)
        wait_until(self.answers, f"http.server on {self.port} answers")
        return self

    def answers(self) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/probe").status_code in (200, 404)
        except httpx.HTTPError:
            return False

    def served(self, path: str = "/page") -> int:
        """GET requests for ``path`` it answered, across its restarts."""
        return self.log.read_text().count(f'"GET {path}')

    def kill(self) -> None:
        """SIGKILL: the process dies at once, its connections and listening socket with it."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
