"""``[server] watch``: the master reloads by itself when the config file or a file it names changes.

Theory of operation
-------------------
A thread of the master runs ``watchfiles.watch`` (the notify crate: inotify
on Linux; no polling loop of ours) on the folders of the watched files, not
recursively, and lets through only changes to those files: editors that save
by writing a new file and renaming it over the old one replace the inode a
watch on the file itself would follow. watchfiles yields once a change was
followed by 500 ms without another (at most 2 s after the first), so one save
is one reload. The thread then calls ``on_change`` (the master's reload
request, a byte on its request pipe); the reload itself runs in the master's
loop, with the guarantees of SIGHUP: a bad file is refused and logged, the
running config goes on.

The watched files are the config file and the files it names: listener
certificates and keys, upstream CA and client certificate files, the Redis
and events TLS files (``watched_files``). ``follow(loaded)`` is called with
each config that comes into service and restarts the thread when that list
changes (or stops it, when the new config turns watch off). ACME storage is
not watched: its manager asks for its own reload.
"""

import os
import threading
from collections.abc import Callable

from fastgate.config.listeners import resolve
from fastgate.config.load import LoadedConfig
from fastgate.observe.errorlog import log

QUIET_MS = 500
"""A change is reported after this long without another."""
LONGEST_MS = 2000
"""...or this long after the first change, whichever comes first."""


def watched_files(loaded: LoadedConfig) -> tuple[str, ...]:
    """The config file and every file it names, as absolute paths, without repeats."""
    config = loaded.config
    base_dir = os.path.dirname(os.path.abspath(loaded.path))
    named: list[str] = []
    for listener in config.listeners:
        if listener.tls is not None:
            for certificate in listener.tls.certificates:
                named += [certificate.cert, certificate.key]
            if listener.tls.acme is not None:
                named.append(listener.tls.acme.directory_ca_file)
    for upstream in config.upstreams:
        named += [upstream.tls_ca_file, upstream.tls_client_cert, upstream.tls_client_key]
    redis = config.ratelimit.redis
    if redis is not None:
        named += [redis.tls_ca_file, redis.tls_cert_file, redis.tls_key_file]
    if config.events is not None:
        named.append(config.events.tls_ca_file)
    paths = [os.path.abspath(loaded.path)] + [os.path.abspath(resolve(base_dir, p)) for p in named if p]
    return tuple(dict.fromkeys(paths))


class ConfigWatcher:
    """The watching thread of the master, following the config in service."""

    def __init__(self, on_change: Callable[[], None]) -> None:
        self.on_change = on_change
        """Called from the watching thread after a change (must be thread-safe)."""
        self.files: tuple[str, ...] = ()
        self.thread: threading.Thread | None = None
        self.stop_event = threading.Event()

    def follow(self, loaded: LoadedConfig) -> None:
        """Watch what ``loaded`` names if its ``server.watch`` is on; stop watching otherwise."""
        files = watched_files(loaded) if loaded.config.server.watch else ()
        if files == self.files and (self.thread is not None or not files):
            return
        self.stop()
        self.files = files
        if files:
            self.stop_event = threading.Event()
            self.thread = threading.Thread(target=self._watch, args=(files, self.stop_event),
                                           name="fastgate-watch", daemon=True)
            self.thread.start()
            log.info("watching %d files for changes: %s", len(files), ", ".join(files))

    def stop(self) -> None:
        if self.thread is not None:
            self.stop_event.set()
            self.thread.join(timeout=2 * QUIET_MS / 1000)
            self.thread = None

    def _watch(self, files: tuple[str, ...], stop_event: threading.Event) -> None:
        import watchfiles

        wanted = frozenset(files)
        folders = sorted({os.path.dirname(f) for f in files})
        try:
            for changes in watchfiles.watch(*folders, watch_filter=lambda _, path: path in wanted,
                                            debounce=LONGEST_MS, step=QUIET_MS, stop_event=stop_event,
                                            recursive=False, raise_interrupt=False):
                log.info("changed: %s; reloading", ", ".join(sorted({path for _, path in changes})))
                self.on_change()
        except Exception as exc:  # a folder removed, the watch limit reached: say so, serve on
            log.error("watching the config files stopped: %s", exc)
