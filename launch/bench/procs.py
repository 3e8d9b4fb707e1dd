"""Child processes of the benchmark: the key service, the fake upstream, mitmdump (passthrough or
gateway), HAProxy.

Every child runs in its own session, receives SIGTERM when the benchmark process dies (Linux
``PR_SET_PDEATHSIG``), and is stopped by ``Children.stop_all()`` at the end, also on errors. CPU
use is read from ``/proc/<pid>/stat`` (utime + stime, all threads).
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
MITMDUMP = Path(sys.executable).with_name("mitmdump")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def die_with_parent() -> None:
    """In a child between fork and exec: new session, SIGTERM when the parent goes away."""
    os.setsid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads) in seconds."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        stat = f.read()
    fields = stat[stat.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class Proc:
    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log: Path,
        *,
        cpus: set[int] | None = None,
        cwd: Path | None = None,
        stdout_pipe: bool = False,
        stdin_pipe: bool = False,
    ):
        self.name = name
        self.argv = [str(a) for a in argv]
        self.log = log
        self.cpus = cpus
        self.cwd = cwd
        self.stdout_pipe = stdout_pipe
        self.stdin_pipe = stdin_pipe
        self.popen: subprocess.Popen | None = None
        self.port: int | None = None

    def start(self) -> Proc:
        cpus = self.cpus

        def setup() -> None:
            die_with_parent()
            if cpus:
                os.sched_setaffinity(0, cpus)

        self.log.parent.mkdir(parents=True, exist_ok=True)
        out = subprocess.PIPE if self.stdout_pipe else open(self.log, "wb")
        self.popen = subprocess.Popen(
            self.argv,
            stdin=subprocess.PIPE if self.stdin_pipe else None,
            stdout=out,
            stderr=open(self.log, "ab") if self.stdout_pipe else subprocess.STDOUT,
            cwd=self.cwd,
            preexec_fn=setup,
        )
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def output(self, tail: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-tail:]
        except OSError:
            return ""

    def wait_port(self, port: int, timeout: float = 30.0, ready: Callable[[], bool] | None = None) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited ({self.popen.returncode}): {self.output()}")
            if ready is None or ready():
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    self.port = port
                    return
                except OSError:
                    pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not listen on {port} within {timeout:.0f}s: {self.output()}")

    def cpu(self) -> float:
        try:
            return cpu_seconds(self.pid)
        except (OSError, ValueError, IndexError):
            return 0.0

    def stop(self) -> None:
        p = self.popen
        if p is None or p.poll() is not None:
            return
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            p.wait(8)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(5)


class Children:
    """Every child process the benchmark started; ``stop_all`` ends them (by pid, never by name)."""

    def __init__(self) -> None:
        self.procs: list[Proc] = []

    def add(self, proc: Proc) -> Proc:
        self.procs.append(proc)
        return proc

    def stop(self, proc: Proc) -> None:
        proc.stop()
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        for p in reversed(self.procs):
            try:
                p.stop()
            except Exception as e:  # keep stopping the others
                print(f"bench: could not stop {p.name}: {e}", file=sys.stderr)
        self.procs.clear()


def start_upstream(
    children: Children, tmp: Path, keys: bytes, lifetime: float, cpus: set[int] | None
) -> tuple[Proc, dict]:
    """The fake Graph; ``keys`` (``keypipe.encode``) go into its stdin, never into a file."""
    proc = children.add(
        Proc(
            "upstream",
            [sys.executable, HERE / "upstream.py", "--lifetime", str(int(lifetime))],
            tmp / "upstream.log",
            cpus=cpus,
            stdout_pipe=True,
            stdin_pipe=True,
        ).start()
    )
    try:
        proc.popen.stdin.write(keys)
        proc.popen.stdin.close()
    except OSError:  # it died before reading: its log says why
        pass
    import selectors

    with selectors.DefaultSelector() as sel:  # the upstream prints one JSON line once it listens
        sel.register(proc.popen.stdout, selectors.EVENT_READ)
        line = proc.popen.stdout.readline() if sel.select(60) else b""
    if not line:
        proc.popen.wait(5)
        raise RuntimeError(f"upstream did not start: {proc.output()}")
    info = json.loads(line)
    proc.port = info["port"]
    return proc, info


GATEWAY_SCRIPT = REPO / "addons" / "gateway.py"


def mitmdump_argv(
    port: int,
    upstream_port: int,
    *,
    gateway: bool,
    tmp: Path,
    keys: Sequence[str],
    name: str,
    rules: Path | None = None,
    extra: Sequence[str] = (),
    script: Path | None = None,
) -> list[str]:
    argv = [
        str(MITMDUMP),
        "-q",
        "--mode",
        f"reverse:http://127.0.0.1:{upstream_port}",
        "--listen-host",
        "127.0.0.1",
        "--listen-port",
        str(port),
        "--set",  # its own: mitmdumps started side by side would race writing one fresh CA (MalformedFraming)
        f"confdir={tmp / f'mitmconf-{name}'}",
        "--set",
        "keep_host_header=true",
        "--set",
        "termlog_verbosity=error",
    ]
    if gateway:
        argv += [
            "-s",
            str(script or GATEWAY_SCRIPT),
            *keys,
            "--set",
            f"cloakgate_audit={tmp / f'audit-{name}.jsonl'}",
        ]
        if rules is not None:
            argv += ["--set", f"cloakgate_rules={rules}"]
    return argv + list(extra)


def start_mitmdump(
    children: Children,
    name: str,
    upstream_port: int,
    *,
    gateway: bool,
    tmp: Path,
    keys: Sequence[str],
    cpus: set[int] | None,
    rules: Path | None = None,
    wrap: Sequence[str] = (),
    extra: Sequence[str] = (),
) -> Proc:
    """Start mitmdump as a reverse proxy to the upstream (call ``wait_port(proc.port)`` before use);
    ``keys`` are the gateway's key options (``keysource.Keys.gateway_args``)."""
    port = free_port()
    argv = mitmdump_argv(
        port, upstream_port, gateway=gateway, tmp=tmp, keys=keys, name=name, rules=rules, extra=extra
    )
    if wrap:  # e.g. [python, cprofile_mitmdump.py, out.prof, "--"]: the wrapper runs mitmdump itself
        argv = [*wrap, *argv[1:]]
    proc = children.add(Proc(name, argv, tmp / f"{name}.log", cpus=cpus, cwd=tmp).start())
    proc.port = port
    return proc


def haproxy_path() -> str | None:
    return shutil.which("haproxy") or next(
        (p for p in ("/usr/sbin/haproxy", "/usr/local/sbin/haproxy") if os.access(p, os.X_OK)), None
    )


def ensure_package(
    package: str, find: Callable[[], str | None], allow_install: bool
) -> tuple[str | None, str]:
    """A tool from the distribution (``find`` gives its path): found, or installed with apt-get
    when allowed (root only)."""
    path = find()
    if path:
        return path, "found"
    if not allow_install:
        return None, f"{package} is not installed (the smoke run does not install packages)"
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return None, f"{package} is not installed and cannot be installed here (needs root and apt-get)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (
        ["apt-get", "install", "-y", "-q", package],
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", package],
    ):
        try:
            subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)
        except subprocess.TimeoutExpired:
            return None, f"apt-get timed out while installing {package}"
        path = find()
        if path:
            return path, "installed with apt-get"
    return None, f"apt-get install {package} failed"


def start_haproxy(
    children: Children, haproxy: str, backends: Sequence[int], tmp: Path, name: str, cpus: set[int] | None
) -> Proc:
    """HAProxy in TCP mode (L4) spreading client connections round-robin over the backends."""
    port = free_port()
    cfg = tmp / f"{name}.cfg"
    servers = "\n".join(f"  server g{i} 127.0.0.1:{p}" for i, p in enumerate(backends))
    cfg.write_text(f"""global
  maxconn 4096
  nbthread 1
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend fe
  bind 127.0.0.1:{port}
  default_backend be
backend be
  balance roundrobin
{servers}
""")
    proc = children.add(Proc(name, [haproxy, "-f", cfg, "-db", "-q"], tmp / f"{name}.log", cpus=cpus).start())
    proc.wait_port(port, timeout=10)
    return proc
