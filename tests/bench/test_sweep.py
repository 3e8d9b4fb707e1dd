"""The sweep's ladders, with a fake proxy whose capacity is known (no load is generated here)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "launch" / "bench"))

pytest.importorskip("hdrh", reason="hdrhistogram (the bench extra) is not installed")

import sweep  # noqa: E402


@pytest.fixture
def fake_steps(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, float]]:
    """Each target passes every rate up to its capacity (the port stands for it); records the order."""
    seen: list[tuple[str, float]] = []

    def step(port, workload, procs, spec, cpus, rate, steps, label="", log=print):  # noqa: ANN001
        seen.append((procs[0], rate))
        ok = rate <= port
        steps.append({"rate": rate, "ok": ok})
        return ok

    monkeypatch.setattr(sweep, "_step", step)
    return seen


def test_ladders_interleave_and_find_each_capacity(fake_steps: list[tuple[str, float]]):
    spec = sweep.SweepSpec(refine=2)
    targets = {"passthrough": (250, ["pt"]), "gateway": (205, ["gw"])}
    probes = {"passthrough": {"achieved": 300.0}, "gateway": {"achieved": 240.0}}
    got = sweep.sustainable_interleaved(targets, "light", spec, None, probes, log=lambda *_: None)
    # passthrough: 150 210 255x -> bisect 232 244; gateway: 120 168 204 240x -> 222x 213x
    assert got["passthrough"]["sustainable"] == 244 and got["passthrough"]["first_fail"] == 255
    assert got["gateway"]["sustainable"] == 204 and got["gateway"]["first_fail"] == 213
    who = [w for w, _ in fake_steps]
    assert who[:4] == ["pt", "gw", "gw", "pt"]  # one step each in turn, the order alternating
    assert [r for w, r in fake_steps if w == "gw"] == [120, 168, 204, 240, 222, 213]


def test_single_target_wrapper_matches_the_ladder(fake_steps: list[tuple[str, float]]):
    spec = sweep.SweepSpec(refine=1)
    got = sweep.sustainable(400, "list", ["one"], spec, None, probe={"achieved": 400.0}, log=lambda *_: None)
    assert [r for _, r in fake_steps] == [200, 280, 340, 400, 460, 430]
    assert got["sustainable"] == 400 and got["first_fail"] == 430 and len(got["steps"]) == 6


def test_no_capacity_no_steps(fake_steps: list[tuple[str, float]]):
    got = sweep.sustainable(100, "list", ["x"], sweep.SweepSpec(), None, probe={"achieved": 0.0}, log=lambda *_: None)
    assert fake_steps == [] and got["sustainable"] is None and got["first_fail"] is None
