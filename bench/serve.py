"""``python -m bench.serve``: the bench origin and a fastgate in front of it, until Ctrl-C.

For load and profiling by hand: Locust (bench/locustfile.py), wrk, py-spy on a
worker. fastgate's routes:

    /api/*      -> origin (prefix stripped), with the gateway features
    /limited/*  -> origin (prefix stripped), with the gateway features; a
                   small rate limit goes on this route once fastgate has
                   rate limits (until then it never answers 429)
    /static/*   -> origin (prefix stripped), plain
    /health     answered by fastgate itself

The origin serves /small (12 B), /16k, /1m and answers POST /orders with 201.
"""

import argparse
import shutil
import signal
from contextlib import ExitStack

from bench.peers import ProxySpec
from bench.peers.fastgate import SUPPORTED, Fastgate, gateway_settings
from bench.peers.origin import start_origin
from bench.procs import make_workdir, raise_fd_limit


class MixedRoutes(Fastgate):
    def routes(self, spec: ProxySpec) -> list[dict]:
        gateway, _ = gateway_settings(SUPPORTED)
        to_origin = {"upstream": "origin", "prefix_rewrite": "/"}
        return [
            {"name": "api", "path_prefix": "/api/", **to_origin, **gateway},
            {"name": "limited", "path_prefix": "/limited/", **to_origin, **gateway},
            {"name": "static", "path_prefix": "/static/", **to_origin, "request_id": False},
            {"name": "health", "path": "/health", "respond": {"status": 200, "body": "ok\n"}},
        ]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8080, help="fastgate's port (default 8080)")
    parser.add_argument("--workers", type=int, default=1, help="fastgate workers (default 1)")
    parser.add_argument("--seconds", type=float, default=3600, help="stop after this long (default 3600)")
    args = parser.parse_args()
    raise_fd_limit()
    workdir = make_workdir("fastgate-serve-")
    try:
        with ExitStack() as stack:
            origin, origin_port = start_origin(workdir / "origin", None)
            stack.enter_context(origin)
            spec = ProxySpec(workdir / "fastgate", args.port, origin_port, args.workers, SUPPORTED,
                             max_connections=10_000)
            server = MixedRoutes().start(spec, None)
            stack.enter_context(server.proc)
            print(f"origin:   http://127.0.0.1:{origin_port}  (nginx, pid {origin.pid})")
            print(f"fastgate: http://127.0.0.1:{args.port}  (master {server.master_pid}, "
                  f"workers {' '.join(map(str, server.worker_pids))}; features {', '.join(server.features)})")
            print(f"config:   {spec.workdir / 'fastgate.toml'}")
            print(f"Ctrl-C stops both (or after {args.seconds:.0f} s)", flush=True)
            # Blocked only now, so that the servers did not inherit the blocked mask.
            stop = {signal.SIGINT, signal.SIGTERM}
            signal.pthread_sigmask(signal.SIG_BLOCK, stop)
            signal.sigtimedwait(stop, args.seconds)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
