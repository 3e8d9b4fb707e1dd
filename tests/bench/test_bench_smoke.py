"""The benchmark's smoke run: every part for a moment, into a temporary directory.

Checks that it runs and writes its table, JSON and plot. It asserts no timing. Only 127.0.0.1 is
used, and the smoke run installs nothing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("hdrh", reason="hdrhistogram (the bench extra) is not installed")

REPO = Path(__file__).resolve().parents[2]
MAIN = REPO / "launch" / "bench" / "main.py"

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, str]:
    out = tmp_path_factory.mktemp("bench-smoke")
    proc = subprocess.run(
        [sys.executable, str(MAIN), "--smoke", "--hook-times", "--aa", "--out", str(out),
         "--max-minutes", "1.5"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert proc.returncode == 0, (
        f"smoke run failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    )
    return out, json.loads((out / "results.json").read_text()), proc.stdout


def test_writes_table_json_and_plot(smoke: tuple[Path, dict, str]) -> None:
    out, res, _ = smoke
    md = (out / "results.md").read_text()
    assert "| workload | configuration | p50 | p90 | p99 | p99.9 | max |" in md
    assert "## Gateway against passthrough: the targets of issue 4" in md
    png = (out / "latency.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 1000
    assert {"meta", "constant", "sweep", "targets", "micro"} <= set(res)
    assert not (out / "latest.md").exists()
    idle = [r for r in res["micro"] if r["group"] == "whole request (core, after 3 ms idle)"]
    assert [r["name"] for r in idle] == [
        "protect_request POST messages", "reveal_body list (warm cache)", "reveal_body light (warm cache)"]
    assert all(r["us_op"] > 0 for r in idle) and "| whole request (core, after 3 ms idle) |" in md


def test_direct_and_passthrough_ran(smoke: tuple[Path, dict, str]) -> None:
    _, res, _ = smoke
    ran = {(c["config"], c["workload"]) for c in res["constant"]}
    for cfg in ("direct", "passthrough"):
        assert res["configs"][cfg]["status"] == "ok", res["configs"][cfg]
        assert {(cfg, w) for w in ("list", "light", "write")} <= ran
    assert all(c["completed"] > 0 for c in res["constant"])


def test_gateway_ran(smoke: tuple[Path, dict, str]) -> None:
    _, res, _ = smoke
    gw = res["configs"].get("gateway", {})
    assert gw.get("status") == "ok", f"the benchmark skipped the gateway: {gw.get('reason')}"
    assert gw["verify"]["list_tokens_left"] == 0
    assert {("gateway", w) for w in ("list", "light", "write")} <= {
        (c["config"], c["workload"]) for c in res["constant"]
    }
    assert res["keycalls"]["per_request"] == 0


def test_keys_from_the_key_service(smoke: tuple[Path, dict, str]) -> None:
    """The default key source is the simulated key service, and its calls were counted, not assumed."""
    out, res, _ = smoke
    assert res["meta"]["keys"]["source"] == "service"
    assert "SIMULATED TEE" in (out / "results.md").read_text()
    gw = res["configs"].get("gateway", {})
    assert gw.get("status") == "ok", f"the benchmark skipped the gateway: {gw.get('reason')}"
    kc = res["keycalls"]
    assert kc["source"] == "service"
    assert isinstance(kc["calls"], int) and not isinstance(kc["calls"], bool)
    assert kc["requests"] > 0
    assert [r["workload"] for r in kc["runs"]] == ["list", "light", "write"]
    assert all(isinstance(r["before"], int) and r["before"] > 0 for r in kc["runs"])


def test_hook_times_inside_mitmdump(smoke: tuple[Path, dict, str]) -> None:
    """--hook-times: every hook of the gateway was timed inside a running mitmdump (the guard is not
    in the chain while the gateway is ready)."""
    out, res, _ = smoke
    hooks = {"gateway.requestheaders", "gateway.request", "gateway.response"}
    assert set(res["hook_times"]) == {"list", "light", "write"}
    for wl, got in res["hook_times"].items():
        assert set(got["hooks"]) == hooks, (wl, got)
        assert got["requests"] > 0 and all(h["calls"] > 0 and h["p50"] > 0 for h in got["hooks"].values())
    assert "## The gateway's hooks timed inside mitmdump (`--hook-times`)" in (out / "results.md").read_text()


def test_aa_a_second_passthrough_climbed_the_same_ladder(smoke: tuple[Path, dict, str]) -> None:
    """--aa: a second, identical passthrough ran in the sweep's interleaved ladders (not in the constant-rate
    runs), its ratio against the first is reported beside the gateway's."""
    out, res, log = smoke
    assert res["configs"]["passthrough-b"]["status"] == "ok"
    assert res["configs"]["passthrough-b"]["verify"]["ok"]
    aa = res["aa"]["light"]
    (p,) = [s for s in res["sweep"] if s["config"] == "passthrough" and s["workload"] == "light"]
    assert aa["sustainable"][0] == p["sustainable"] and aa["steps"] and len(aa["closed"]["rounds"]) >= 1
    assert {s["rate"] for s in aa["steps"]} & {s["rate"] for s in p["steps"]}  # the same grid
    if all(aa["sustainable"]):
        assert aa["ratio"] == aa["sustainable"][1] / aa["sustainable"][0]
    assert "passthrough-b" not in {c["config"] for c in res["constant"]}
    assert "passthrough-b " in log  # its steps, in turn with the others'
    md = (out / "results.md").read_text()
    assert "## A/A: passthrough against a second, identical passthrough (`--aa`)" in md
    assert "| light | " in md.split("## A/A")[1]


@pytest.mark.skipif(
    shutil.which("valgrind") is None,
    reason="valgrind is not installed (launch/bench.sh --instructions installs it)",
)
def test_instruction_counts_under_callgrind(tmp_path: Path) -> None:
    """--instructions: passthrough and gateway each counted under callgrind, the ratio in the table."""
    proc = subprocess.run(
        [sys.executable, str(MAIN), "--smoke", "--instructions", "--workloads", "light", "--no-sweep",
         "--no-scale", "--no-micro", "--out", str(tmp_path), "--max-minutes", "6"],
        cwd=REPO, capture_output=True, text=True, timeout=400,
    )
    assert proc.returncode == 0, f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    got = json.loads((tmp_path / "results.json").read_text())["instructions"]
    assert [(r["workload"], r["config"]) for r in got["rows"]] == [
        ("light", "passthrough"), ("light", "gateway")]
    assert all(r.get("requests", 0) > 0 and r["per_request"] > 1e6 and r["warmup_requests"] >= 8
               for r in got["rows"]), got["rows"]
    assert 0 < got["ratios"]["light"]["ratio"] < 1.5
    assert all(0 <= r["idle_per_s"] and r["per_request"] <= r["raw_per_request"] for r in got["rows"]), got["rows"]
    md = (tmp_path / "results.md").read_text()
    assert "## Counted in instructions (`--instructions`, valgrind's callgrind)" in md
