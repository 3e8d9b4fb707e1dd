"""Profile the gateway process under load: py-spy (sampling, attaches to the running mitmdump) when
installed in the venv, else cProfile (a second gateway started under ``cprofile_mitmdump.py``).

The summary answers two questions: how much of the proxy's CPU is the gateway addon's own code
(samples with a ``cloakgate`` frame on the stack), and which functions the time goes to (self time
and inclusive time, aggregated per function).
"""

from __future__ import annotations

import pstats
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>.*?)(?::(?P<line>\d+))?\)$")


def pyspy_path() -> str | None:
    cand = Path(sys.executable).with_name("py-spy")
    return str(cand) if cand.exists() else shutil.which("py-spy")


def start_pyspy(pid: int, seconds: float, out: Path, rate: int = 200) -> subprocess.Popen:
    exe = pyspy_path()
    assert exe is not None
    return subprocess.Popen(
        [
            exe,
            "record",
            "-p",
            str(pid),
            "-d",
            str(max(1, round(seconds))),
            "-r",
            str(rate),
            "-f",
            "raw",
            "-o",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _short(file: str) -> str:
    if not file.startswith("/"):
        return file  # py-spy already prints module-relative paths (mitmproxy/..., cloakgate/...)
    for marker in ("site-packages/", "/addons/", "/lib/python3"):
        i = file.find(marker)
        if i >= 0:
            rest = file[i + len(marker) :]
            return rest.split("/", 1)[1] if marker == "/lib/python3" and "/" in rest else rest
    return file.rsplit("/", 1)[-1]


def _area(file: str) -> str:
    s = _short(file)
    if s.startswith("cloakgate/") or "/cloakgate/" in file:
        return "cloakgate (gateway addon and core)"
    if s.startswith("mitmproxy/"):
        return "mitmproxy"
    if s.startswith("cryptography/"):
        return "cryptography"
    if s.startswith(("asyncio/", "selectors", "ssl", "socket")):
        return "asyncio"
    return "other (stdlib, libraries)"


def summarize_pyspy(raw: Path, top: int = 20) -> dict:
    self_t: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    area_self: Counter[str] = Counter()
    total = with_cloakgate = other_threads = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        count = int(n)
        frames = []
        for f in stack.split(";"):
            m = _FRAME.match(f)
            if m and m.group("file"):
                frames.append((m.group("func"), m.group("file")))
        if not frames:
            continue
        if frames[0][0] == "Thread._bootstrap":  # not the event loop (e.g. an idle executor worker)
            other_threads += count
            continue
        total += count
        names = [f"{fn} ({_short(fi)})" for fn, fi in frames]
        if any("cloakgate" in fi for _, fi in frames):
            with_cloakgate += count
        self_t[names[-1]] += count
        area_self[_area(frames[-1][1])] += count
        for nm in set(names):
            incl[nm] += count
    pct = (lambda c: round(100.0 * c / total, 1)) if total else (lambda c: 0.0)
    return {
        "tool": "py-spy",
        "samples": total,
        "cloakgate_pct": pct(with_cloakgate),
        "areas": [(a, pct(c)) for a, c in area_self.most_common()],
        "self": [(f, pct(c)) for f, c in self_t.most_common(top)],
        "inclusive": [(f, pct(c)) for f, c in incl.most_common(top * 2) if "cloakgate" in f][:top],
    }


def summarize_cprofile(prof: Path, top: int = 20) -> dict:
    st = pstats.Stats(str(prof))
    stats = st.stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in stats.values()) or 1e-9  # tottime
    rows = sorted(stats.items(), key=lambda kv: kv[1][2], reverse=True)
    selfs = [(f"{fn} ({_short(fi)}:{ln})", round(100 * v[2] / total, 1)) for (fi, ln, fn), v in rows[:top]]
    cg = [(k, v) for k, v in stats.items() if "cloakgate" in k[0]]
    incl = sorted(cg, key=lambda kv: kv[1][3], reverse=True)[:top]
    areas: Counter[str] = Counter()
    for (fi, _, _), v in stats.items():
        areas[_area(fi)] += v[2]
    cg_top = max((v[3] for _, v in cg), default=0.0)
    return {
        "tool": "cProfile",
        "samples": sum(v[1] for v in stats.values()),
        "cloakgate_pct": round(100 * cg_top / total, 1),
        "areas": [(a, round(100 * t / total, 1)) for a, t in areas.most_common()],
        "self": selfs,
        "inclusive": [
            (f"{fn} ({_short(fi)}:{ln})", round(100 * v[3] / total, 1)) for (fi, ln, fn), v in incl
        ],
    }


def format_summary(s: dict) -> str:
    out = [
        f"Profiler: {s['tool']}, "
        + (
            f"{s['samples']} samples of the event-loop thread"
            if s["tool"] == "py-spy"
            else f"{s['samples']} function calls over the process's whole life, start-up included"
        )
        + (f" ({s['other_threads']} samples of other threads left out)" if s.get("other_threads") else "")
        + f". Share with gateway code (cloakgate) on the stack: **{s['cloakgate_pct']} %** "
        "(the rest is mitmproxy, asyncio, I/O).",
        "",
        "| where the time is spent (self) | % |",
        "|---|---:|",
    ]
    out += [f"| {a} | {p} |" for a, p in s["areas"]]
    out += ["", "| top functions, self time | % |", "|---|---:|"]
    out += [f"| `{f}` | {p} |" for f, p in s["self"]]
    out += ["", "| cloakgate functions, inclusive time | % |", "|---|---:|"]
    out += [f"| `{f}` | {p} |" for f, p in s["inclusive"]]
    return "\n".join(out)
