"""The benchmark report's arithmetic on a fixed result (no load is generated here)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "launch" / "bench"))

import report  # noqa: E402


def _row(n: int, sustainable: int, steps: list[tuple[int, bool, float]]) -> dict:
    return {
        "n": n,
        "sustainable": sustainable,
        "closed": {"achieved": sustainable * 1.2, "rounds": [sustainable * 1.2]},
        "closed_vs_one": None,
        "steps": [{"rate": r, "ok": ok, "proxy_cpu_pct": cpu} for r, ok, cpu in steps],
    }


def test_scale_out_reports_the_cores_the_gateways_got():
    one = _row(1, 200, [(100, True, 50.0), (200, False, 99.0), (200, True, 80.0), (230, False, 95.0)])
    two = _row(2, 300, [(200, True, 100.0), (300, True, 150.0), (340, False, 170.0)])
    assert report.cores_at_sustainable(one) == 0.8  # the passing attempt at the sustainable rate
    assert report.per_core(one) == 250 and report.per_core(two) == 200
    res = {"meta": {"params": {"rate": 100, "workloads": []}}, "scale": {"rows": [one, two]}}
    (t,) = [t for t in report.targets(res) if t["target"].startswith("scale-out")]
    assert t["met"] is False  # 300 < 0.8 x 2 x 200: the verdict stays on the raw ratio
    assert "used 1.50 cores there" in t["measured"] and "0.80 x what one did per core" in t["measured"]


def test_scale_out_says_how_busy_the_whole_machine_was():
    one = _row(1, 200, [(200, True, 80.0)])
    two = _row(2, 300, [(300, False, 150.0), (300, True, 150.0)])
    two["steps"][0]["machine_busy_pct"] = 60.0  # the failed attempt: not the one reported
    two["steps"][1]["machine_busy_pct"] = 97.4
    res = {"meta": {"params": {"rate": 100, "workloads": []}, "machine": {"cores": 2}}, "scale": {"rows": [one, two]}}
    (t,) = [t for t in report.targets(res) if t["target"].startswith("scale-out")]
    assert "used 1.50 cores there (the machine's 2 cores 97 % busy)" in t["measured"]
    assert t["met"] is False  # a saturated machine explains the ratio; it does not change the verdict


def test_a_target_check_decides_the_verdict_and_is_reported():
    one = _row(1, 886, [(886, True, 97.0)])
    two = _row(2, 1418, [(1403, True, 158.0), (1442, False, 161.0), (1418, True, 160.0)])
    two["target_check"] = {"rate": 1418, "ok": True, "between": [1403, 1442]}
    res = {"meta": {"params": {"rate": 100, "workloads": []}}, "scale": {"rows": [one, two]}, "sweep": []}
    (t,) = [t for t in report.targets(res) if t["target"].startswith("scale-out")]
    assert t["met"] is True and t["measured"].startswith("0.80 x 2 x one (1418 vs 886")
    said = report._target_checks([one, two])
    assert "N=2 at 1418 req/s (between 1403 passing and 1442 failing): pass" in said
    check = {"rate": 249, "ok": False, "between": [248, 255]}
    said = report._target_checks([{"workload": "light", "config": "gateway", "target_check": check}])
    assert "light gateway at 249 req/s (between 248 passing and 255 failing): FAIL" in said
    assert report._target_checks([one]) == ""


def test_no_passing_step_no_cores():
    row = _row(1, 0, [(100, False, 99.0)])
    row["sustainable"] = None
    assert report.cores_at_sustainable(row) is None and report.per_core(row) is None


def test_instruction_counts_become_ratios_and_a_table():
    import instructions

    dump = b"events: Ir\nsummary: 9393652000\n"
    assert instructions.parse_total(dump) == 9393652000
    assert instructions.parse_total(b"events: Ir\ntotals: 17\n") == 17 and instructions.parse_total(b"") is None
    rows = [
        {"workload": "light", "config": "passthrough", "per_request": 8_700_000.0},
        {"workload": "light", "config": "gateway", "per_request": 9_400_000.0},
        {"workload": "list", "config": "passthrough", "per_request": 8_900_000.0},
        {"workload": "list", "config": "gateway", "error": "callgrind wrote no dump with a total"},
    ]
    r = instructions.ratios(rows)
    assert set(r) == {"light"}  # no ratio without both counts
    assert r["light"]["added"] == 700_000 and abs(r["light"]["ratio"] - 8.7 / 9.4) < 1e-12
    md = report.instructions_section({"rows": rows, "ratios": r, "load": "closed loop"})
    assert "| light | 8,700,000 | 9,400,000 | +700,000 (+8.0 %) | 0.926 |" in md
    assert "- not counted: list gateway: callgrind wrote no dump with a total" in md
    rows[0].update(idle_per_s=120_000.0, idle_per_request=20_000.0, idle_settled=True)
    rows[1].update(idle_per_s=9e6, idle_per_request=1.5e6, idle_settled=False)
    md = report.instructions_section({"rows": rows, "ratios": r, "load": "closed loop"})
    assert ("Idle counts subtracted: light passthrough 120 K/s (20.0 K per request); light gateway 9,000 K/s "
            "(1,500.0 K per request, NOT settled: start-up work was still running).") in md
    assert report.instructions_section({"reason": "valgrind is not installed"})[-1] == (
        "Not counted: valgrind is not installed.")
    sweep = [{"config": c, "workload": "light", "sustainable": s}
             for c, s in (("gateway", 190), ("passthrough", 200))]
    res = {"meta": {"params": {"rate": 100, "workloads": []}}, "instructions": {"ratios": r}, "sweep": sweep}
    (t,) = [t for t in report.targets(res) if "light" in t["target"]]
    assert t["measured"].endswith("; instructions per request 0.926 x") and t["met"] is True


def test_instruction_counts_wait_for_start_up_work_and_subtract_the_idle_rate(monkeypatch, tmp_path):
    """The idle count is taken window by window until one is quiet; the load's count loses that
    rate times its seconds, so per-second timers do not weigh on a slower proxy's requests."""
    import instructions
    import loadgen

    windows = iter([3e9, 1e9, 0.2e6])  # start-up work, then quiet
    calls = []
    monkeypatch.setattr(instructions, "_control", lambda pid, *a: calls.append(a))
    dumps = {}

    def dumped(out_file, n, timeout=30.0):
        if n not in dumps:
            dumps[n] = next(windows, None)
        return dumps[n]

    monkeypatch.setattr(instructions, "_dumped_total", dumped)
    spec = instructions.Spec(warmup_requests=1, idle_window=0.01, idle_quiet=1e9, duration=0.0)
    idle = instructions._idle(1, tmp_path / "cg.out", spec)
    assert idle["dumps"] == 3 and idle["settled"] and idle["per_s"] < 1e9
    assert calls == [("--dump",)] * 3

    class Proc:
        pid, port = 1, 1

    class Result:
        completed, errors, non2xx = 10, 0, 0

    def load(*a, **k):
        time.sleep(0.05)
        return Result()

    monkeypatch.setattr(loadgen, "run", load)
    windows = iter([1e7, 5e9])  # quiet at once (about 1e9 per second); the load's dump
    monkeypatch.setattr(instructions, "valgrind_path", lambda: "valgrind")
    dumps.clear()
    spec = instructions.Spec(warmup_requests=1, idle_window=0.01, idle_quiet=2e9, duration=0.0)
    row = instructions.measure(lambda wrap: Proc(), lambda p: None, "light", tmp_path / "cg.out", spec, None)
    assert row["raw_per_request"] == 5e8 and row["idle_settled"]
    idle_total = row["idle_per_s"] * row["seconds"]
    assert idle_total > 2e7  # 50 ms of about 1e9 per second
    assert row["per_request"] == pytest.approx((5e9 - idle_total) / 10)
    assert row["idle_per_request"] == pytest.approx(idle_total / 10)


def test_aa_ratio_is_reported_beside_the_gateways_without_changing_its_verdict():
    def ladder(cfg: str, sustainable: int) -> dict:
        return {"config": cfg, "workload": "light", "sustainable": sustainable,
                "closed": {"achieved": 800, "p50": 60.0, "rounds": [800]}, "steps": []}

    res = {
        "meta": {"params": {"rate": 100, "workloads": []}},
        "sweep": [ladder("passthrough", 750), ladder("gateway", 705)],
        "paired": {"light": 0.97},
        "aa": {"light": {"sustainable": [750, 720], "ratio": 0.96, "closed_ratio": 1.01, "steps": [],
                         "closed": {"rounds": [808]}}},
    }
    (t,) = [t for t in report.targets(res) if t["target"].startswith("sustainable throughput, light")]
    assert t["met"] is False  # 705 / 750 = 0.94: the A/A figure is context, not a correction
    assert t["measured"].endswith("; A/A, passthrough against itself: 0.96 x")
    section = "\n".join(report.aa_section(res["aa"], report.ratios(res)))
    assert "| light | 750 / 720 | 0.96 | 1.01 | 0.94 | 0.97 |" in section
    del res["aa"]
    (t,) = [t for t in report.targets(res) if t["target"].startswith("sustainable throughput, light")]
    assert "A/A" not in t["measured"]
