"""The latency percentile plot, like the paper's figure: latency against percentile on a
``1/(1-p)`` log axis (HdrHistogram's plotter style), one panel per workload, one line per
configuration. Matplotlib when it is installed (launch/bench.sh installs it into the venv), else a
small built-in PNG renderer (lines, grid, 3x5 pixel font) so the run never lacks its plot.
"""

from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path

from hdrh.histogram import HdrHistogram

COLORS = {"direct": (90, 90, 90), "passthrough": (31, 119, 180), "gateway": (214, 39, 40)}
EXTRA = [(44, 160, 44), (148, 103, 189), (255, 127, 14), (140, 86, 75)]
TICKS = [(1, "0%"), (10, "90%"), (100, "99%"), (1000, "99.9%"), (10000, "99.99%"), (100000, "99.999%")]


def percentile_curve(h: HdrHistogram) -> list[tuple[float, float]]:
    """(1/(1-p), latency ms) points from p = 0 up to the last recorded value."""
    n = h.get_total_count()
    if not n:
        return []
    pts = []
    top = math.log10(max(n, 10))
    steps = 60
    for i in range(steps + 1):
        x = 10 ** (top * i / steps)
        p = 100.0 * (1 - 1 / x)
        pts.append((x, h.get_value_at_percentile(p) / 1000.0))
    pts.append((10**top * 1.0001, h.get_max_value() / 1000.0))
    return pts


def color_of(name: str, i: int) -> tuple[int, int, int]:
    return COLORS.get(name, EXTRA[i % len(EXTRA)])


def write_plot(path: Path, panels: dict[str, dict[str, HdrHistogram]], title: str) -> str:
    """Write the PNG; returns which renderer drew it."""
    curves = {
        wl: {cfg: percentile_curve(h) for cfg, h in hs.items() if h.get_total_count()}
        for wl, hs in panels.items()
    }
    curves = {wl: c for wl, c in curves.items() if c}
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        _fallback(path, curves, title)
        return "built-in PNG renderer (matplotlib not installed)"
    n = max(1, len(curves))
    fig, axes = plt.subplots(1, n, figsize=(5.2 * n, 4.4), squeeze=False)
    for ax, (wl, cs) in zip(axes[0], curves.items()):
        for i, (cfg, pts) in enumerate(cs.items()):
            r, g, b = color_of(cfg, i)
            ax.plot(
                [p[0] for p in pts], [p[1] for p in pts], label=cfg, color=(r / 255, g / 255, b / 255), lw=1.8
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        xmax = max(p[0] for pts in cs.values() for p in pts)
        ticks = [t for t in TICKS if t[0] <= xmax * 1.01]
        ax.set_xticks([t[0] for t in ticks], [t[1] for t in ticks])
        ax.set_xlim(1, xmax)
        ax.set_xlabel("percentile")
        ax.set_ylabel("latency (ms, from scheduled send time)")
        ax.set_title(wl)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="upper left")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return "matplotlib"


# --- fallback renderer -------------------------------------------------------------------------------

_GLYPHS = {
    "0": "111101101101111",
    "1": "010110010010111",
    "2": "111001111100111",
    "3": "111001111001111",
    "4": "101101111001001",
    "5": "111100111001111",
    "6": "111100111101111",
    "7": "111001001010010",
    "8": "111101111101111",
    "9": "111101111001111",
    "A": "010101111101101",
    "B": "110101110101110",
    "C": "011100100100011",
    "D": "110101101101110",
    "E": "111100110100111",
    "F": "111100110100100",
    "G": "011100101101011",
    "H": "101101111101101",
    "I": "111010010010111",
    "J": "001001001101010",
    "K": "101101110101101",
    "L": "100100100100111",
    "M": "101111111101101",
    "N": "110101101101101",
    "O": "010101101101010",
    "P": "110101110100100",
    "Q": "010101101110011",
    "R": "110101110101101",
    "S": "011100010001110",
    "T": "111010010010010",
    "U": "101101101101111",
    "V": "101101101101010",
    "W": "101101111111101",
    "X": "101101010101101",
    "Y": "101101010010010",
    "Z": "111001010100111",
    ".": "000000000000010",
    "%": "101001010100101",
    "/": "001001010100100",
    "(": "010100100100010",
    ")": "010001001001010",
    "-": "000000111000000",
    ":": "000010000010000",
    "=": "000111000111000",
    "+": "000010111010000",
    ",": "000000000010100",
    "_": "000000000000111",
    " ": "000000000000000",
}


class _Canvas:
    def __init__(self, w: int, h: int):
        self.w, self.h = w, h
        self.px = bytearray(b"\xff" * (w * h * 3))

    def dot(self, x: int, y: int, c: tuple[int, int, int]) -> None:
        if 0 <= x < self.w and 0 <= y < self.h:
            i = (y * self.w + x) * 3
            self.px[i : i + 3] = bytes(c)

    def rect(self, x0: int, y0: int, x1: int, y1: int, c: tuple[int, int, int]) -> None:
        for y in range(max(0, y0), min(self.h, y1)):
            for x in range(max(0, x0), min(self.w, x1)):
                self.dot(x, y, c)

    def line(
        self, x0: float, y0: float, x1: float, y1: float, c: tuple[int, int, int], width: int = 1
    ) -> None:
        n = int(max(abs(x1 - x0), abs(y1 - y0))) + 1
        for i in range(n + 1):
            x = round(x0 + (x1 - x0) * i / n)
            y = round(y0 + (y1 - y0) * i / n)
            for dx in range(width):
                for dy in range(width):
                    self.dot(x + dx, y + dy, c)

    def text(self, x: int, y: int, s: str, c: tuple[int, int, int] = (0, 0, 0), scale: int = 2) -> None:
        for ch in s.upper().replace("µ", "U"):
            g = _GLYPHS.get(ch, _GLYPHS[" "])
            for k, bit in enumerate(g):
                if bit == "1":
                    self.rect(
                        x + (k % 3) * scale,
                        y + (k // 3) * scale,
                        x + (k % 3 + 1) * scale,
                        y + (k // 3 + 1) * scale,
                        c,
                    )
            x += 4 * scale

    def png(self) -> bytes:
        raw = b"".join(b"\x00" + bytes(self.px[y * self.w * 3 : (y + 1) * self.w * 3]) for y in range(self.h))

        def chunk(kind: bytes, data: bytes) -> bytes:
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

        return (
            b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", self.w, self.h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 6))
            + chunk(b"IEND", b"")
        )


def _fallback(path: Path, curves: dict[str, dict[str, list[tuple[float, float]]]], title: str) -> None:
    pw, ph, ml, mt, mb = 440, 330, 70, 50, 50
    n = max(1, len(curves))
    cv = _Canvas(n * (pw + ml) + 20, ph + mt + mb)
    cv.text(10, 10, title[:120], scale=2)
    grey, dark = (225, 225, 225), (60, 60, 60)
    for k, (wl, cs) in enumerate(curves.items()):
        x0 = ml + k * (pw + ml)
        y0 = mt
        xmax = max(p[0] for pts in cs.values() for p in pts)
        ys = [p[1] for pts in cs.values() for p in pts if p[1] > 0]
        lo = 10 ** math.floor(math.log10(min(ys))) if ys else 0.1
        hi = 10 ** math.ceil(math.log10(max(ys))) if ys else 10
        if hi <= lo:
            hi = lo * 10

        def sx(v: float) -> float:
            return x0 + pw * math.log10(max(v, 1)) / max(math.log10(xmax), 1e-9)

        def sy(v: float) -> float:
            return (
                y0 + ph - ph * (math.log10(max(v, lo)) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))
            )

        d = lo
        while d <= hi * 1.0001:
            cv.line(x0, sy(d), x0 + pw, sy(d), grey)
            cv.text(x0 - 60, int(sy(d)) - 5, f"{d:g}MS")
            d *= 10
        for t, lab in TICKS:
            if t <= xmax * 1.01:
                cv.line(sx(t), y0, sx(t), y0 + ph, grey)
                cv.text(int(sx(t)) - 8, y0 + ph + 8, lab)
        cv.line(x0, y0 + ph, x0 + pw, y0 + ph, dark)
        cv.line(x0, y0, x0, y0 + ph, dark)
        cv.text(x0 + pw // 2 - 20, y0 - 16, wl)
        for i, (cfg, pts) in enumerate(cs.items()):
            c = color_of(cfg, i)
            for a, b in zip(pts, pts[1:]):
                cv.line(sx(a[0]), sy(a[1]), sx(b[0]), sy(b[1]), c, width=2)
            cv.rect(x0 + 10, y0 + 10 + 16 * i, x0 + 22, y0 + 20 + 16 * i, c)
            cv.text(x0 + 28, y0 + 10 + 16 * i, cfg)
        cv.text(x0 + pw // 2 - 40, y0 + ph + 28, "PERCENTILE")
    path.write_bytes(cv.png())
