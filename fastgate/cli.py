"""The ``fastgate`` command: run, test the config (-t), signal a running master (-s), version (-V),
the config's JSON Schema (--print-schema)."""

import argparse
import os
import signal
import sys

import msgspec

from fastgate import __version__, native
from fastgate.config.errors import ConfigError
from fastgate.config.load import load_config

DEFAULT_CONFIG = "conf/gate.conf"
_SIGNALS = {"reload": signal.SIGHUP, "stop": signal.SIGTERM, "quit": signal.SIGQUIT, "reopen": signal.SIGUSR1}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastgate", description="A fast API gateway and reverse proxy.")
    parser.add_argument("-c", "--config", default=DEFAULT_CONFIG, help=f"config file (default: {DEFAULT_CONFIG})")
    parser.add_argument("-t", "--test", action="store_true", help="check the config and exit 0 (good) or 1 (bad)")
    parser.add_argument("-s", "--signal", choices=sorted(_SIGNALS), help="send a signal to the running master")
    parser.add_argument("-V", "--version", action="version", version=f"fastgate {__version__} ({native.summary()})")
    parser.add_argument("--workers", type=int, help="number of worker processes (overrides the config)")
    parser.add_argument("--print-schema", action="store_true",
                        help="write the config's JSON Schema (for editors: taplo, VS Code Even Better TOML) and exit")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.print_schema:
        from fastgate.config.json_schema import config_schema

        sys.stdout.write(msgspec.json.format(msgspec.json.encode(config_schema()), indent=2).decode() + "\n")
        return 0
    if args.workers is not None and args.workers < 1:
        print("fastgate: --workers must be at least 1", file=sys.stderr)
        return 1
    try:
        loaded = load_config(args.config)
    except ConfigError as exc:
        print(f"fastgate: configuration error: {exc}", file=sys.stderr)
        if args.test:
            print(f"fastgate: configuration file {args.config} test failed", file=sys.stderr)
        return 1
    if args.test:
        print(f"fastgate: configuration file {args.config} syntax is ok")
        print(f"fastgate: configuration file {args.config} test is successful")
        return 0
    if args.signal:
        return _send_signal(loaded.config.server.pid_file, args.signal)
    from fastgate.master.supervisor import Master
    from fastgate.observe import errorlog

    errorlog.use_format(loaded.config.server.error_log_format)
    try:
        return Master(args.config, args.workers).run(loaded)
    except OSError as exc:
        print(f"fastgate: cannot start: {exc}", file=sys.stderr)
        return 1


def _send_signal(pid_file: str, name: str) -> int:
    try:
        with open(pid_file) as f:
            pid = int(f.read().strip())
    except (OSError, ValueError) as exc:
        print(f"fastgate: cannot read pid file {pid_file}: {exc}", file=sys.stderr)
        return 1
    try:
        os.kill(pid, _SIGNALS[name])
    except ProcessLookupError:
        print(f"fastgate: no process with pid {pid} (from {pid_file})", file=sys.stderr)
        return 1
    return 0
