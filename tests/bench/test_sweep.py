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
    # passthrough: 210 240 270x -> bisect 255x 248; gateway: 168 192 216x -> 204 210x
    assert got["passthrough"]["sustainable"] == 248 and got["passthrough"]["first_fail"] == 255
    assert got["gateway"]["sustainable"] == 204 and got["gateway"]["first_fail"] == 210
    who = [w for w, _ in fake_steps]
    assert who[:4] == ["pt", "gw", "gw", "pt"]  # one step each in turn, the order alternating
    assert [r for w, r in fake_steps if w == "gw"] == [168, 192, 216, 204, 210]
    assert "grid" not in got["gateway"]


def test_common_grid_climbs_the_same_rates_whatever_the_probes_said(fake_steps: list[tuple[str, float]]):
    """Equal capacities, probes 25 % apart: own ladders answer apart, the common grid alike."""
    spec = sweep.SweepSpec(refine=2)
    targets = {"passthrough": (230, ["pt"]), "gateway": (230, ["gw"])}
    probes = {
        "passthrough": {"achieved": 320.0, "rounds": [300.0, 320.0, 340.0]},
        "gateway": {"achieved": 256.0, "rounds": [250.0, 256.0, 262.0]},
    }
    own = sweep.sustainable_interleaved(targets, "light", spec, None, probes, log=lambda *_: None)
    assert own["passthrough"]["sustainable"] == 224 and own["gateway"]["sustainable"] == 230
    fake_steps.clear()
    got = sweep.sustainable_interleaved(targets, "light", spec, None, probes, log=lambda *_: None, common=True)
    ref = sweep.common_reference(probes)
    assert ref == (262.0 + 300.0) / 2  # the median of all six rounds
    pt = [r for w, r in fake_steps if w == "pt"]
    assert pt == [r for w, r in fake_steps if w == "gw"] == [197, 225, 253, 239, 232]
    assert got["passthrough"]["sustainable"] == got["gateway"]["sustainable"] == 225
    assert got["gateway"]["grid"] == {"reference": ref, "step": pytest.approx(0.025)}


def test_common_grid_measures_a_ratio_to_its_step(fake_steps: list[tuple[str, float]]):
    spec = sweep.SweepSpec(refine=2)
    for gw_cap in (185, 190, 207, 218, 225, 240, 290, 350):  # within the grid (0.4 .. 1.2 of 300)
        fake_steps.clear()
        targets = {"passthrough": (230, ["pt"]), "gateway": (gw_cap, ["gw"])}
        probes = {"passthrough": {"achieved": 310.0}, "gateway": {"achieved": 290.0}}
        got = sweep.sustainable_interleaved(targets, "list", spec, None, probes, log=lambda *_: None, common=True)
        step = got["gateway"]["grid"]["step"] * got["gateway"]["grid"]["reference"]
        ratio = got["gateway"]["sustainable"] / got["passthrough"]["sustainable"]
        true = min(gw_cap, 300 * 1.2) / 230
        assert abs(ratio - true) <= step / got["passthrough"]["sustainable"] + 0.01, (gw_cap, ratio, true)


def one(cap: float, probe: float, spec: sweep.SweepSpec) -> dict:
    return sweep.sustainable_interleaved(
        {"one": (cap, ["one"])}, "list", spec, None, {"one": {"achieved": probe}}, log=lambda *_: None
    )["one"]


def test_one_target_climbs_its_ladder(fake_steps: list[tuple[str, float]]):
    got = one(400, 400.0, sweep.SweepSpec(refine=1))
    assert [r for _, r in fake_steps] == [280, 320, 360, 400, 440, 420]
    assert got["sustainable"] == 400 and got["first_fail"] == 420 and len(got["steps"]) == 6


def test_a_failing_first_step_goes_on_down_the_grid(fake_steps: list[tuple[str, float]]):
    """A probe far above the capacity: the grid continues below 0.7 before bisecting, not from 0."""
    got = one(160, 350.0, sweep.SweepSpec(refine=2))
    assert [r for _, r in fake_steps] == [245, 210, 175, 140, 158, 166]
    assert got["sustainable"] == 158 and got["first_fail"] == 166


def test_nothing_passes_at_all(fake_steps: list[tuple[str, float]]):
    got = one(10, 350.0, sweep.SweepSpec(refine=2))
    # 245, then down: 210 175 140, then bisected from 0: 70 35
    assert [r for _, r in fake_steps] == [245, 210, 175, 140, 70, 35]
    assert got["sustainable"] is None and got["first_fail"] == 35


def test_default_grid_refines_to_an_eighth_of_its_steps(fake_steps: list[tuple[str, float]]):
    """Steps of a tenth from 0.7, then three bisections: a knee is located to 1.25 % of the reference
    in as many steps as 0.6 with two bisections took (2.5 %)."""
    spec = sweep.SweepSpec()
    assert sweep._grid_step(spec) == pytest.approx(0.0125)
    got = one(230, 300.0, spec)
    assert [r for _, r in fake_steps] == [210, 240, 225, 232, 228]
    assert got["sustainable"] == 228 and got["first_fail"] == 232


def test_no_capacity_no_steps(fake_steps: list[tuple[str, float]]):
    got = one(100, 0.0, sweep.SweepSpec())
    assert fake_steps == [] and got["sustainable"] is None and got["first_fail"] is None


@pytest.mark.parametrize(
    "capacity,target,ran,verdict",
    [
        (249, 248.9, [249], (249, 255, True)),  # between 248 passing and 255 failing: tried, passes
        (248, 248.9, [249], (248, 249, False)),  # tried, fails: the gap narrows, the verdict stays no
        (248, 248.0, [], (248, 255, None)),  # the ladder already passed the target: nothing to decide
        (248, 255.0, [], (248, 255, None)),  # the ladder already failed at it
        (248, 300.0, [], (248, 255, None)),  # above the first failure: not tried
    ],
)
def test_a_target_between_the_last_pass_and_the_first_fail_gets_one_step(fake_steps, capacity, target, ran,
                                                                         verdict):
    ladder = {"sustainable": 248, "first_fail": 255, "steps": []}
    spec = sweep.SweepSpec()
    sweep.check_target(ladder, target, capacity, "light", ["gw"], spec, None, log=lambda *_: None)
    assert [r for _, r in fake_steps] == ran
    best, fail, ok = verdict
    assert (ladder["sustainable"], ladder["first_fail"]) == (best, fail)
    assert (ladder.get("target_check") or {}).get("ok") is ok


def test_no_target_check_without_a_pass_and_a_fail(fake_steps):
    for best, fail in ((None, 26), (400, None)):
        ladder = {"sustainable": best, "first_fail": fail, "steps": []}
        sweep.check_target(ladder, 300.0, 1000, "list", ["gw"], sweep.SweepSpec(), None, log=lambda *_: None)
        assert fake_steps == [] and "target_check" not in ladder


def test_machine_busy_from_proc_stat():
    before = sweep.machine_times()
    if before is None:
        pytest.skip("no /proc/stat here")
    after = sweep.machine_times()
    assert 0 <= before[0] <= before[1] and after[1] >= before[1] and after[0] >= before[0]
    assert sweep.busy_pct((100, 400), (250, 600)) == 75.0
    assert sweep.busy_pct((100, 400), (100, 400)) is None and sweep.busy_pct(None, after) is None
