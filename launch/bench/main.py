"""cloakgate benchmark: the paper's experiment (wrk2, 100 req/s, 2 threads, 50 connections, 2 min)
on three configurations side by side (direct to the fake Outlook, mitmdump passthrough, mitmdump
with the gateway), plus a throughput sweep, HAProxy scale-out, core microbenchmarks and a profile.

    launch/bench.sh            # paper's parameters (2 minutes per run: about half an hour)
    launch/bench.sh --quick    # the whole comparison, short runs (about 9 minutes on 2 cores)
    launch/bench.sh --smoke    # everything very briefly (seconds); what tests/bench runs

Results: ``launch/bench/results/<timestamp>/`` (results.md, results.json, latency.png, logs) and
``launch/bench/results/latest.md``. Only 127.0.0.1 is used; every child process is stopped at the
end, also on errors, and dies with this process.

The gateways take their keys from the key service in a SIMULATED TEE started for the run
(``--keys service``, the default; ``--keys dev``: a DEVELOPMENT key ring file), and the key-service
calls they make during the constant-rate runs are counted from the service's audit log.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import keycalls  # noqa: E402
import keypipe  # noqa: E402
import keysource  # noqa: E402
import loadgen  # noqa: E402
import plot  # noqa: E402
import procs  # noqa: E402
import profiling  # noqa: E402
import report  # noqa: E402
import sweep  # noqa: E402
import verify  # noqa: E402
import workloads  # noqa: E402

RESULTS = HERE / "results"
CONFIGS = ("direct", "passthrough", "gateway")
AA = "passthrough-b"  # --aa: a second passthrough, identical to the first, in the sweep's ladders

MODES = {  # per mode: constant-rate run, sweep steps, microbenchmark time, profile time, safety deadline
    "full": dict(
        duration=120.0,
        segments=4,
        warmup=5.0,
        probe=10.0,
        step=15.0,
        rounds=5,
        refine=3,
        drain=5.0,
        micro=1.0,
        profile=30.0,
        max_minutes=90.0,
    ),
    "quick": dict(
        duration=12.0,
        segments=3,
        warmup=1.0,
        probe=3.0,
        step=4.0,
        rounds=3,
        refine=3,
        drain=5.0,
        micro=0.3,
        profile=10.0,
        max_minutes=20.0,
    ),
    "smoke": dict(
        duration=0.6,
        segments=2,
        warmup=0.2,
        probe=0.5,
        step=0.5,
        rounds=1,
        refine=0,
        drain=2.0,
        micro=0.003,
        profile=2.0,
        max_minutes=2.0,
    ),
}


_T0 = time.monotonic()


def log(msg: str) -> None:
    print(f"[{time.monotonic() - _T0:6.1f}s] {msg}" if msg else "", flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="launch/bench.sh",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="short runs: the whole comparison in minutes")
    g.add_argument(
        "--smoke", action="store_true", help="everything very briefly (seconds): checks that it runs"
    )
    ap.add_argument("--out", type=Path, help="results directory (default: launch/bench/results/<timestamp>)")
    ap.add_argument(
        "--latest",
        type=Path,
        help="where to copy results.md (default: results/latest.md, only when --out is not given)",
    )
    ap.add_argument("--rate", type=float, default=100.0, help="constant rate, requests/s (paper: 100)")
    ap.add_argument("--connections", type=int, default=50, help="connections (paper: 50)")
    ap.add_argument("--workers", type=int, default=2, help="generator processes (paper: 2 threads)")
    ap.add_argument(
        "--generator",
        choices=loadgen.GENERATORS,
        default="auto",
        help="load generator worker: c (launch/bench/cgen.c, built with the machine's C compiler), python "
        "(asyncio), or auto (C where it builds; default)",
    )
    ap.add_argument("--duration", type=float, help="seconds per constant-rate run (paper: 120; --quick 10)")
    ap.add_argument(
        "--segments",
        type=int,
        help="constant-rate runs are cut into this many segments, the configurations alternating "
        "(A B C, C B A, ...), their histograms merged: every configuration sees the same machine drift",
    )
    ap.add_argument("--warmup", type=float, help="seconds of warm-up before measuring, per run")
    ap.add_argument("--workloads", default=",".join(workloads.WORKLOADS), help="constant-rate workloads")
    ap.add_argument("--configs", default=",".join(CONFIGS), help="configurations to measure")
    ap.add_argument(
        "--sweep-workloads",
        help="workloads of the throughput sweep ('' = none; default list,light, --smoke: light)",
    )
    ap.add_argument("--probe", type=float, help="seconds of the closed-loop probe")
    ap.add_argument("--step", type=float, help="seconds per open-loop rate step")
    ap.add_argument("--rounds", type=int, help="interleaved closed-loop rounds per configuration")
    ap.add_argument("--slo-p90-ms", type=float, default=50.0, help="p90 bound of a sustainable rate step")
    ap.add_argument("--slo-p99-ms", type=float, default=500.0, help="p99 bound of a sustainable rate step")
    ap.add_argument(
        "--gc-stats", action="store_true", help="log garbage-collector pauses in every mitmdump (diagnostic)"
    )
    ap.add_argument(
        "--hook-times",
        action="store_true",
        help="time the gateway's hooks inside mitmdump at the constant rate, one gateway per workload "
        "(diagnostic; launch/bench/hooktimes.py)",
    )
    ap.add_argument(
        "--aa",
        action="store_true",
        help="A/A calibration: a second passthrough, identical to the first, climbs the sweep's ladders "
        "interleaved with the other two; the ratio of two identical configurations is the noise floor "
        "of the throughput ratios in this run (about 1 minute more per sweep workload)",
    )
    ap.add_argument("--no-sweep", action="store_true")
    ap.add_argument("--no-scale", action="store_true", help="skip the HAProxy scale-out")
    ap.add_argument("--scale-max", type=int, default=os.cpu_count() or 1, help="largest N (default: cores)")
    ap.add_argument("--scale-workload", help="workload of the scale-out (default list; --smoke: light)")
    ap.add_argument("--no-micro", action="store_true")
    ap.add_argument(
        "--profile", action="store_true", help="profile the gateway under load (py-spy, else cProfile)"
    )
    ap.add_argument("--profile-seconds", type=float)
    ap.add_argument(
        "--profile-workload",
        default="list",
        help="workload(s) while profiling, comma-separated (default list)",
    )
    ap.add_argument(
        "--pin",
        choices=("auto", "on", "off"),
        default="auto",
        help="auto/on: proxy on the last core, generator and upstream on the others (needs 2+ cores)",
    )
    ap.add_argument(
        "--instructions",
        action="store_true",
        help="also count instructions per request with valgrind (callgrind): passthrough and gateway per "
        "workload, a ratio without the noise of throughput (about 1 minute per proxy; needs valgrind)",
    )
    ap.add_argument("--no-install", action="store_true", help="never apt-get install haproxy or valgrind")
    ap.add_argument(
        "--wrk", choices=("auto", "off"), default="auto", help="also run wrk's closed loop if installed"
    )
    ap.add_argument(
        "--rules", type=Path, help="rules directory for the gateway (default: the checkout's rules/)"
    )
    ap.add_argument(
        "--keys",
        choices=("service", "dev"),
        default="service",
        help="where the gateways' keys come from: the key service in a SIMULATED TEE started for the run "
        "(default), or a DEVELOPMENT key ring file",
    )
    ap.add_argument(
        "--key-ttl",
        type=int,
        default=3600,
        help="seconds the key service lets gateways cache released keys (default 3600: one lease covers "
        "the run, so the count shows calls made per request; the service's own default is 300, and a "
        "gateway renews from 3/4 of the lease on, in the background: such a renewal is counted too)",
    )
    ap.add_argument(
        "--gateway-script",
        type=Path,
        help="mitmdump script of the gateway (default: addons/gateway.py; "
        "e.g. another checkout's, to compare before and after)",
    )
    ap.add_argument("--max-minutes", type=float, help="hard deadline for the whole run")
    a = ap.parse_args(argv)
    if a.gateway_script is not None:
        procs.GATEWAY_SCRIPT = a.gateway_script.resolve()
    a.mode = "smoke" if a.smoke else "quick" if a.quick else "full"
    d = MODES[a.mode]
    for k in ("duration", "segments", "warmup", "probe", "step", "rounds"):
        if getattr(a, k) is None:
            setattr(a, k, d[k])
    if a.profile_seconds is None:
        a.profile_seconds = d["profile"]
    if a.max_minutes is None:
        a.max_minutes = d["max_minutes"]
    a.refine, a.drain, a.micro_time = d["refine"], d["drain"], d["micro"]
    a.workload_list = [w for w in a.workloads.split(",") if w]
    a.config_list = [c for c in a.configs.split(",") if c]
    if a.scale_workload is None:
        a.scale_workload = "light" if a.mode == "smoke" else "list"
    if a.sweep_workloads is None:
        a.sweep_workloads = "light" if a.mode == "smoke" else "list,light"
    a.sweep_list = [] if a.no_sweep else [w for w in a.sweep_workloads.split(",") if w]
    for w in a.workload_list + a.sweep_list + [a.scale_workload, *a.profile_workload.split(",")]:
        if w not in workloads.WORKLOADS:
            ap.error(f"unknown workload {w!r}")
    for c in a.config_list:
        if c not in CONFIGS:
            ap.error(f"unknown configuration {c!r}")
    return a


class Deadline(Exception):
    pass


def _raise_deadline(signum: int, frame: object) -> None:
    raise Deadline("the benchmark ran past its deadline (--max-minutes)")


def _raise_exit(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def pinning(a: argparse.Namespace) -> tuple[set[int] | None, set[int] | None, str]:
    cpus = sorted(os.sched_getaffinity(0))
    if a.pin == "off" or len(cpus) < 2:
        why = "off" if a.pin == "off" else f"only {len(cpus)} core"
        return (
            None,
            None,
            f"CPU pinning: none ({why}); the proxy, the generator and the upstream share the cores.",
        )
    proxy, rest = {cpus[-1]}, set(cpus[:-1])
    return (
        proxy,
        rest,
        (
            f"CPU pinning: the proxy on core {cpus[-1]}, the generator and the upstream on "
            f"core(s) {','.join(map(str, sorted(rest)))} (a mitmproxy process is one event loop; "
            "pinning keeps the generator from stealing its core)."
        ),
    )


def run_wrk(port: int, workload: str, seconds: float, connections: int) -> float | None:
    exe = shutil.which("wrk")
    if not exe or workload == "write":
        return None
    target = workloads.LIST_TARGET if workload == "list" else workloads.LIGHT_TARGET
    try:
        out = subprocess.run(
            [
                exe,
                "-t2",
                f"-c{connections}",
                f"-d{max(1, round(seconds))}s",
                "-H",
                f"Host: {workloads.HOST}",
                f"http://127.0.0.1:{port}{target}",
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 30,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    return float(m.group(1)) if m else None


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    t_start = time.monotonic()
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    out = (a.out or RESULTS / stamp).resolve()
    out.mkdir(parents=True, exist_ok=True)
    latest = a.latest if a.latest else (RESULTS / "latest.md" if a.out is None else None)
    tmp = Path(tempfile.mkdtemp(prefix="cloakgate-bench-"))
    children = procs.Children()
    signal.signal(signal.SIGTERM, _raise_exit)
    signal.signal(signal.SIGALRM, _raise_deadline)
    signal.alarm(int(a.max_minutes * 60))
    proxy_cpus, gen_cpus, pin_text = pinning(a)
    a.generator, why_not_c = loadgen.choose(a.generator)  # resolved once: every run uses the same worker
    fallback = f" (the C worker did not build: {why_not_c})" if why_not_c else ""
    log(f"bench: load generator: {a.generator}{fallback}")
    res: dict = {
        "meta": {
            "timestamp": stamp,
            "mode": a.mode,
            "pinning": pin_text,
            "machine": report.machine(),
            "gateway_script": str(procs.GATEWAY_SCRIPT),
            "command": "launch/bench.sh "
            + " ".join(shlex.quote(x) for x in (argv if argv is not None else sys.argv[1:])),
            "params": {
                "rate": a.rate,
                "connections": a.connections,
                "workers": a.workers,
                "generator": a.generator,
                "generator_fallback": why_not_c,
                "duration": a.duration,
                "segments": a.segments,
                "warmup": a.warmup,
                "workloads": a.workload_list,
                "slo_p90_ms": a.slo_p90_ms,
                "slo_p99_ms": a.slo_p99_ms,
                "probe": a.probe,
                "step": a.step,
            },
        },
        "configs": {},
        "constant": [],
        "sweep": [],
        "notes": [],
    }
    rc = 0
    try:
        rc = run(a, res, tmp, children, proxy_cpus, gen_cpus, out)
    except (Deadline, KeyboardInterrupt, SystemExit) as e:
        res["notes"].append(f"run interrupted: {type(e).__name__} {e}")
        log(f"bench: interrupted ({type(e).__name__} {e})")
        rc = 2
    except Exception as e:  # noqa: BLE001 - the partial results are still written, the exit code says it failed
        import traceback

        res["notes"].append(f"run failed: {type(e).__name__}: {_oneline(str(e))}")
        traceback.print_exc()
        rc = 1
    finally:
        signal.alarm(0)
        children.stop_all()
        logs = out / "logs"
        logs.mkdir(exist_ok=True)
        for f in sorted(tmp.glob("*.log")):
            shutil.copy(f, logs / f.name)
            if a.gc_stats:
                import gcstats

                st = gcstats.parse(f.read_text(errors="replace"))
                if st:
                    res.setdefault("gc", {})[f.stem] = st
        shutil.rmtree(tmp, ignore_errors=True)
    res["meta"]["elapsed_s"] = time.monotonic() - t_start
    write_outputs(res, out, latest)
    return rc


def write_outputs(res: dict, out: Path, latest: Path | None) -> None:
    res["targets"] = report.targets(res)
    hists = res.pop("_hists", {})
    panels: dict[str, dict] = {}
    for (cfg, wl), h in hists.items():
        panels.setdefault(wl, {})[cfg] = h
    p = res["meta"]["params"]
    title = (
        f"cloakgate: latency by percentile at {p['rate']:g} req/s, {p['connections']} connections, "
        f"{p['duration']:g} s ({res['meta']['timestamp']}, {res['meta']['machine']['cores']} cores)"
    )
    res["meta"]["plot"] = plot.write_plot(out / "latency.png", panels, title)
    md = report.markdown(res)
    (out / "results.md").write_text(md)
    (out / "results.json").write_text(json.dumps(res, indent=1, default=str))
    if latest is not None:
        try:
            rel = os.path.relpath(out / "latency.png", latest.parent)
        except ValueError:
            rel = str(out / "latency.png")
        latest.parent.mkdir(parents=True, exist_ok=True)
        latest.write_text(report.markdown(res, png_name=rel))
    print("\n" + md, flush=True)
    log(f"bench: results in {out}" + (f" and {latest}" if latest else ""))


def run(
    a: argparse.Namespace,
    res: dict,
    tmp: Path,
    children: procs.Children,
    proxy_cpus: set[int] | None,
    gen_cpus: set[int] | None,
    out: Path,
) -> int:
    lifetime = a.max_minutes * 60 + 60

    # 0. the keys: the key service (started first, stopped last by children.stop_all) or the dev ring
    keys = start_keys(a, res, tmp, children)

    # 1. microbenchmarks first, on a quiet machine
    if not a.no_micro:
        log("bench: microbenchmarks of the core")
        import micro

        try:
            res["micro"] = micro.run(keys.ring, a.micro_time)
        except Exception as e:  # noqa: BLE001 - the core may be mid-change; the load tests still run
            res["notes"].append(f"microbenchmarks failed: {type(e).__name__}: {_oneline(str(e))}")
            log(f"bench: microbenchmarks failed: {type(e).__name__}: {e}")

    # 2. upstream, passthrough, gateway (started together, measured one at a time)
    log("bench: starting the fake upstream and the proxies")
    upstream, info = procs.start_upstream(children, tmp, keypipe.encode(keys.ring), lifetime, gen_cpus)
    res["workload_info"] = {
        k: info[k] for k in ("list_tokens", "list_truncated", "list_bytes", "light_tokens", "light_bytes")
    }
    ports: dict[str, int] = {"direct": upstream.port} if "direct" in a.config_list else {}
    proxies: dict[str, procs.Proc] = {}
    aa = a.aa and bool(a.sweep_list) and "passthrough" in a.config_list
    if a.aa and not aa:
        res["notes"].append("--aa: no A/A comparison (it needs a sweep and the passthrough configuration)")
    wanted = [*a.config_list, *([AA] if aa else [])]
    for cfg in wanted:
        if cfg == "direct":
            res["configs"][cfg] = {"status": "ok"}
            continue
        if cfg == "gateway" and keys.gateway_args is None:
            res["configs"][cfg] = {"status": "skipped", "reason": keys.problem}
            log(f"bench: {cfg} SKIPPED: {keys.problem}")
            continue
        proxies[cfg] = procs.start_mitmdump(
            children,
            cfg,
            upstream.port,
            gateway=cfg == "gateway",
            tmp=tmp,
            keys=keys.gateway_args or [],
            cpus=proxy_cpus,
            rules=a.rules,
            extra=_extra(a),
        )
    for cfg, pr in list(proxies.items()):
        try:
            pr.wait_port(pr.port, timeout=60)
            ports[cfg] = pr.port
            res["configs"][cfg] = {"status": "ok"}
        except RuntimeError as e:
            res["configs"][cfg] = {
                "status": "skipped",
                "reason": f"mitmdump did not start: {_oneline(str(e))}",
            }
            log(f"bench: {cfg} SKIPPED: {res['configs'][cfg]['reason']}")
            children.stop(pr)
            del proxies[cfg]

    # 3. one checked request of each kind per configuration
    for cfg in list(ports):
        audit = tmp / f"audit-{cfg}.jsonl" if cfg == "gateway" else None
        try:
            facts = verify.check(cfg if cfg != AA else "passthrough", ports[cfg], upstream.port, audit, info,
                                 keys.ring)
        except Exception as e:  # noqa: BLE001 - reported, the configuration is skipped
            facts = {"ok": False, "problems": [f"{type(e).__name__}: {e}"]}
        res["configs"][cfg]["verify"] = facts
        if not facts["ok"]:
            pr = proxies.get(cfg)
            if pr is not None:
                try:
                    pr.popen.wait(
                        1.0
                    )  # a script error at start-up makes mitmdump exit shortly after listening
                except subprocess.TimeoutExpired:
                    pass
            if pr is not None and (not pr.alive() or "error in script" in pr.output(20000)):
                reason = (
                    f"the gateway could not start: addons/gateway.py failed to load "
                    f"({_last_error(pr.output(4000))})"
                )
            else:
                tail = _oneline(pr.output(1500)) if pr is not None else ""
                reason = "check failed: " + "; ".join(facts["problems"]) + (f" (log: {tail})" if tail else "")
            res["configs"][cfg].update(status="skipped", reason=reason)
            log(f"bench: {cfg} SKIPPED: {reason}")
            if cfg in proxies:
                children.stop(proxies.pop(cfg))
            del ports[cfg]
        elif cfg == "gateway":
            fp = [x for x in facts.get("fields_protected", []) if x]
            if fp:
                res["workload_info"]["fields_protected"] = "/".join(str(x) for x in fp)
            res["workload_info"]["list_revealed"] = facts.get("list_revealed")
            log(
                f"bench: gateway checked: {facts.get('list_revealed')} tokens revealed per list response, "
                f"fields protected per POST {fp}, upstream got tokens only"
            )

    # 4. constant rate, configurations interleaved per workload
    hists: dict[tuple[str, str], object] = {}
    res["_hists"] = hists
    log(
        f"bench: constant rate {a.rate:g} req/s x {a.duration:g} s, {a.connections} connections, "
        f"{a.workers} workers"
    )
    key_runs: list[keycalls.Run] = []
    segments = max(1, a.segments)
    for wl in a.workload_list:
        cfgs = [c for c in CONFIGS if c in ports]
        parts: dict[str, list[loadgen.Result]] = {c: [] for c in cfgs}
        cpu = {c: [0.0, 0.0, 0.0] for c in cfgs}  # proxy CPU s, upstream CPU s, wall s
        before = {c: keycalls.read_counter(keys.audit) if c == "gateway" else None for c in cfgs}
        for seg in range(segments):  # A B C, C B A, ...: drift of the machine hits every configuration alike
            for cfg in cfgs if seg % 2 == 0 else reversed(cfgs):
                pr = proxies.get(cfg)
                c0, u0, t0 = (pr.cpu() if pr else 0.0), upstream.cpu(), time.monotonic()
                parts[cfg].append(
                    loadgen.run(
                        ports[cfg],
                        wl,
                        mode="open",
                        rate=a.rate,
                        connections=a.connections,
                        workers=a.workers,
                        duration=a.duration / segments,
                        warmup=a.warmup,
                        drain=a.drain,
                        cpus=gen_cpus,
                        generator=a.generator,
                    )
                )
                acc = cpu[cfg]
                acc[0] += (pr.cpu() - c0) if pr else 0.0
                acc[1] += upstream.cpu() - u0
                acc[2] += time.monotonic() - t0
        for cfg in cfgs:
            r = loadgen.merge(parts[cfg])
            proxy_s, upstream_s, dt = cpu[cfg]
            s = r.summary()
            s.update(config=cfg, workload=wl, segments=segments)
            s["upstream_cpu_pct"] = round(100 * upstream_s / dt, 1)
            if cfg in proxies:
                s["proxy_cpu_pct"] = round(100 * proxy_s / dt, 1)
                s["cpu_ms_per_req"] = (s["proxy_cpu_pct"] / 100) / max(r.achieved, 1e-9) * 1000
            if cfg == "gateway":
                key_runs.append(keycalls.Run(wl, before[cfg], keycalls.read_counter(keys.audit), r.completed))
            res["constant"].append(s)
            hists[(cfg, wl)] = r.lat
            log(
                f"  {wl:5s} {cfg:11s} p50 {s['p50']:7.2f}  p90 {s['p90']:7.2f}  p99 {s['p99']:7.2f}  "
                f"max {s['max']:7.2f} ms  {s['achieved']:6.0f} req/s  err {s['errors'] + s['non2xx']}  "
                f"proxy CPU {s.get('proxy_cpu_pct', 0):5.1f} %"
            )
    res["keycalls"] = keycalls.measure(keys.source, key_runs) if key_runs else None
    if key_runs:
        log(f"bench: key-service calls in the gateway's constant-rate runs: {res['keycalls']['text']}")

    # 5. throughput sweep
    spec = sweep.SweepSpec(
        probe_s=a.probe,
        step_s=a.step,
        warmup=min(a.warmup, 1.5),
        connections=a.connections,
        workers=a.workers,
        slo_p90_ms=a.slo_p90_ms,
        slo_p99_ms=a.slo_p99_ms,
        refine=a.refine,
        drain=a.drain,
        factors=(0.5,) if a.mode == "smoke" else sweep.SweepSpec.factors,
        retries=0 if a.mode == "smoke" else 1,
        generator=a.generator,
    )
    for wl in a.sweep_list:
        log(
            f"bench: sweep {wl}: closed-loop maximum in {a.rounds} interleaved round(s), then open-loop steps"
        )
        targets = {
            cfg: (ports[cfg], [proxies[cfg]] if cfg in proxies else [upstream])
            for cfg in (*CONFIGS, AA)
            if cfg in ports
        }
        if "direct" in targets:  # the direct path is bounded by the generator: one probe says so
            probes = sweep.closed_rounds({"direct": targets.pop("direct")}, wl, spec, gen_cpus, 1, log=log)
        else:
            probes = {}
        probes.update(sweep.closed_rounds(targets, wl, spec, gen_cpus, a.rounds, log=log))
        log(f"  {wl}: open-loop steps, {' and '.join(targets)} in turn")
        ladders = sweep.sustainable_interleaved(targets, wl, spec, gen_cpus, probes, log=log, common=True)
        need = sweep.TARGET_RATIOS.get(wl)
        if need and "gateway" in ladders and (ladders.get("passthrough") or {}).get("sustainable"):
            port, procs_ = targets["gateway"]
            asked = need * ladders["passthrough"]["sustainable"]
            sweep.check_target(ladders["gateway"], asked, port, wl, procs_, spec, gen_cpus, label="gateway ",
                               log=log)
        for cfg in CONFIGS:
            if cfg not in probes:
                continue
            s = ladders[cfg] if cfg in ladders else {"closed": probes[cfg], "sustainable": None, "steps": []}
            if a.wrk == "auto" and a.mode != "smoke" and shutil.which("wrk"):
                s["wrk"] = run_wrk(ports[cfg], wl, a.probe, a.connections)
            s.update(config=cfg, workload=wl)
            res["sweep"].append(s)
        if "gateway" in probes and "passthrough" in probes:
            res.setdefault("paired", {})[wl] = sweep.paired_ratio(probes["gateway"], probes["passthrough"])
        if AA in ladders and "passthrough" in ladders:
            res.setdefault("aa", {})[wl] = aa_result(ladders[AA], ladders["passthrough"])

    # 6. scale-out behind HAProxy
    for pr in list(proxies.values()):
        children.stop(pr)
    if a.no_scale:
        res["scale"] = {"reason": "disabled (--no-scale)"}
    elif "gateway" not in ports:
        res["scale"] = {"reason": "the gateway configuration did not run (see above)"}
    else:
        res["scale"] = scale_out(a, tmp, keys.gateway_args or [], children, upstream.port, spec)

    # 7. profile
    rig = Rig(a, tmp, keys.gateway_args or [], children, upstream.port, proxy_cpus, gen_cpus)
    if a.profile and "gateway" not in ports:
        res["profile"] = "not profiled: the gateway configuration did not run"
    elif a.profile:
        res["profile"] = profile(rig, out)
    # 8. the gateway's hooks timed inside mitmdump
    if a.hook_times and "gateway" in ports:
        res["hook_times"] = {wl: hook_times(rig, wl) for wl in a.workload_list}
    # 9. instructions per request (callgrind)
    if a.instructions:
        res["instructions"] = instructions(rig, out)
    upstream_check = upstream.alive()
    if not upstream_check:
        res["notes"].append("the upstream died during the run: results are suspect")
    return 0


def aa_result(b: dict, a: dict) -> dict:
    """The A/A comparison of one sweep workload: the second passthrough's ladder against the first's."""
    sa, sb = a.get("sustainable"), b.get("sustainable")
    return {
        "sustainable": [sa, sb],
        "ratio": sb / sa if sa and sb else None,
        "closed_ratio": sweep.paired_ratio(b["closed"], a["closed"]),
        "closed": b["closed"],
        "steps": b["steps"],
    }


def start_keys(
    a: argparse.Namespace, res: dict, tmp: Path, children: procs.Children
) -> keysource.Keys:
    """The run's keys, named in the results; a key service that fails skips the gateway, not the run."""
    if a.keys == "dev":
        keys = keysource.dev(tmp, a.rules)
    else:
        log("bench: starting the key service (SIMULATED TEE) and fetching the keys the gateways will get")
        keys = keysource.service(children, tmp, a.rules, a.key_ttl)
    res["meta"]["keys"] = {"source": keys.source, "text": keys.text}
    if keys.problem:
        res["notes"].append(keys.problem)
        log(f"bench: {keys.problem}")
    return keys


def scale_out(
    a: argparse.Namespace,
    tmp: Path,
    key_args: list[str],
    children: procs.Children,
    upstream_port: int,
    spec: sweep.SweepSpec,
) -> dict:
    if a.scale_max < 2:
        return {"reason": f"only {a.scale_max} core: nothing to scale out to"}
    allow = not (a.no_install or a.smoke)
    haproxy, how = procs.ensure_package("haproxy", procs.haproxy_path, allow_install=allow)
    if haproxy is None:
        log(f"bench: scale-out SKIPPED: {how}")
        return {"reason": how}
    log(f"bench: scale-out with HAProxy ({how}), workload {a.scale_workload}, N = 1..{a.scale_max}")
    rows = []
    sets: dict[int, tuple[procs.Proc, list[procs.Proc]]] = {}
    started: dict[int, list[procs.Proc]] = {}
    try:  # every N's gateways and balancer run side by side, so the rounds can interleave
        started = {
            n: [
                procs.start_mitmdump(
                    children,
                    f"gateway-n{n}-{i}",
                    upstream_port,
                    gateway=True,
                    tmp=tmp,
                    keys=key_args,
                    cpus=None,
                    rules=a.rules,
                    extra=_extra(a),
                )
                for i in range(n)
            ]
            for n in range(1, a.scale_max + 1)
        }
        for n, gws in started.items():
            for g in gws:
                g.wait_port(g.port, timeout=60)
            lb = procs.start_haproxy(
                children, haproxy, [g.port for g in gws], tmp, f"haproxy-n{n}", cpus=None
            )
            sets[n] = (lb, gws)
        probes = sweep.closed_rounds(
            {f"N={n}": (lb.port, gws) for n, (lb, gws) in sets.items()},
            a.scale_workload,
            spec,
            None,
            a.rounds,
            log=log,
        )
        log(f"  open-loop steps, {' and '.join(probes)} in turn")
        ladders = sweep.sustainable_interleaved(
            {f"N={n}": (lb.port, gws) for n, (lb, gws) in sets.items()}, a.scale_workload, spec, None, probes, log=log
        )
        one = ladders["N=1"].get("sustainable") if "N=1" in ladders else None
        for n, (lb, gws) in sets.items():
            s = ladders[f"N={n}"]
            s["n"] = n
            if n > 1 and one:
                asked = sweep.SCALE_TARGET * n * one
                sweep.check_target(s, asked, lb.port, a.scale_workload, gws, spec, None, label=f"N={n} ",
                                   log=log)
            rows.append(s)
        one_probe = probes.get("N=1")
        for r in rows:
            r["closed_vs_one"] = sweep.paired_ratio(r["closed"], one_probe) if one_probe else None
    except RuntimeError as e:
        log(f"  scale-out failed: {_oneline(str(e))}")
        return {"reason": f"failed: {_oneline(str(e))}", "rows": rows}
    finally:
        for lb, _ in sets.values():
            children.stop(lb)
        for gws in started.values():
            for g in gws:
                children.stop(g)
    note = (
        f"Workload {a.scale_workload}; gateways unpinned; HAProxy (1 thread), the generator and the upstream "
        f"run on the same {os.cpu_count()} cores, so N = cores leaves the proxies less than one core each."
    )
    return {"rows": rows, "haproxy": how, "note": note}


@dataclass(frozen=True)
class Rig:
    """What a diagnostic phase (profile, hook times) needs to start one more gateway and load it."""

    a: argparse.Namespace
    tmp: Path
    key_args: list[str]
    children: procs.Children
    upstream_port: int
    proxy_cpus: set[int] | None
    gen_cpus: set[int] | None

    def gateway(self, name: str, *, wrap: list[str] | None = None, extra: list[str] | None = None) -> procs.Proc:
        """A gateway like the measured one (plus ``extra`` mitmdump arguments), listening."""
        return self.proxy(name, gateway=True, wrap=wrap, extra=extra)

    def proxy(
        self,
        name: str,
        *,
        gateway: bool,
        wrap: list[str] | None = None,
        extra: list[str] | None = None,
        timeout: float = 60.0,
    ) -> procs.Proc:
        """A mitmdump like the measured passthrough or gateway (plus ``extra`` arguments), listening."""
        proc = procs.start_mitmdump(
            self.children,
            name,
            self.upstream_port,
            gateway=gateway,
            tmp=self.tmp,
            keys=self.key_args if gateway else [],
            cpus=self.proxy_cpus,
            rules=self.a.rules,
            wrap=wrap or [],
            extra=[*(extra or []), *_extra(self.a)],
        )
        try:
            proc.wait_port(proc.port, timeout=timeout)
        except BaseException:
            self.children.stop(proc)
            raise
        return proc

    def load(self, gw: procs.Proc, workload: str, **kw) -> loadgen.Result:  # noqa: ANN003
        a = self.a
        return loadgen.run(
            gw.port,
            workload,
            connections=a.connections,
            workers=a.workers,
            drain=a.drain,
            cpus=self.gen_cpus,
            generator=a.generator,
            **kw,
        )


def profile(rig: Rig, out: Path) -> str:
    parts = []
    for wl in [w for w in rig.a.profile_workload.split(",") if w]:
        text = profile_one(rig, wl, out)
        parts.append(f"### Under closed-loop load, workload {wl}\n\n{text}")
    return "\n\n".join(parts)


def profile_one(rig: Rig, workload: str, out: Path) -> str:
    secs = rig.a.profile_seconds
    use_pyspy = profiling.pyspy_path() is not None
    log(
        f"bench: profiling the gateway for {secs:g} s under closed-loop {workload} load with "
        f"{'py-spy' if use_pyspy else 'cProfile'}"
    )
    wrap: list[str] = []
    prof_file = out / (f"profile-{workload}-pyspy.txt" if use_pyspy else f"profile-{workload}.prof")
    if not use_pyspy:
        wrap = [sys.executable, str(HERE / "cprofile_mitmdump.py"), str(prof_file), "--"]
    gw = rig.gateway(f"gateway-profile-{workload}", wrap=wrap)
    try:
        # warm up first (start-up work and first-sight reveals are not the steady state)
        rig.load(gw, workload, mode="closed", duration=min(2.0, secs), warmup=0.0)
        spy = profiling.start_pyspy(gw.pid, secs + 1, prof_file) if use_pyspy else None
        time.sleep(0.5)
        rig.load(gw, workload, mode="closed", duration=secs, warmup=0.5)
        if spy is not None:
            _, err = spy.communicate(timeout=60)
            if spy.returncode != 0 or not prof_file.exists():
                return f"py-spy failed: {_oneline(err.decode(errors='replace'))}"
    finally:
        rig.children.stop(gw)
    try:
        summary = (
            profiling.summarize_pyspy(prof_file) if use_pyspy else profiling.summarize_cprofile(prof_file)
        )
    except Exception as e:  # noqa: BLE001
        return f"profile could not be read: {type(e).__name__}: {e}"
    return profiling.format_summary(summary) + f"\n\nRaw profile: `{prof_file.name}`."


def hook_times(rig: Rig, workload: str) -> dict:
    """One gateway with ``hooktimes.py`` under the constant-rate load of one workload: per hook the
    wall time inside the proxy (the warm-up not counted)."""
    import hooktimes

    a = rig.a
    secs = max(2.0, a.duration / max(1, a.segments))
    log(f"bench: timing the gateway's hooks inside mitmdump, {workload} at {a.rate:g} req/s for {secs:g} s")
    timer = ["-s", str(HERE / "hooktimes.py"), "--set", f"cloakgate_hook_times_skip={a.warmup:g}"]
    gw = rig.gateway(f"gateway-hooktimes-{workload}", extra=timer)
    try:
        r = rig.load(gw, workload, mode="open", rate=a.rate, duration=secs, warmup=a.warmup)
    finally:
        rig.children.stop(gw)
    got = hooktimes.parse(gw.output(1 << 20))
    if got is None:
        return {"error": f"no hook times in the log: {_oneline(gw.output(1500))}"}
    got["requests"] = r.completed
    return got


def instructions(rig: Rig, out: Path) -> dict:
    """Instructions per request of passthrough and gateway under callgrind, per workload."""
    import instructions as ins

    a = rig.a
    allow = not (a.no_install or a.smoke)
    vg, how = procs.ensure_package("valgrind", ins.valgrind_path, allow_install=allow)
    if vg is None:
        return {"reason": how}
    spec = ins.Spec(warmup=2.0, warmup_requests=8, duration=4.0, idle_max=10.0) if a.mode == "smoke" else ins.Spec()
    rows = []
    for wl in a.workload_list:
        for cfg in ("passthrough", "gateway"):
            log(f"bench: counting instructions per request (callgrind), {wl} through {cfg}")
            extra = list(ins.GATEWAY_TIMERS_OFF) if cfg == "gateway" else []
            name = f"{cfg}-callgrind-{wl}"
            try:
                row = ins.measure(
                    lambda wrap, n=name, g=cfg == "gateway", x=extra: rig.proxy(
                        n, gateway=g, wrap=[*wrap, sys.executable, str(procs.MITMDUMP)], extra=x,
                        timeout=spec.start_timeout,
                    ),
                    rig.children.stop,
                    wl,
                    rig.tmp / f"callgrind-{name}.out",
                    spec,
                    rig.gen_cpus,
                )
            except (RuntimeError, OSError, subprocess.SubprocessError) as e:  # the next proxy may still count
                row = {"error": f"{type(e).__name__}: {_oneline(str(e), 300)}"}
            row.update(workload=wl, config=cfg)
            log(f"  {wl} {cfg}: " + (f"{row['per_request']:,.0f} instructions per request ({row['requests']} "
                                    f"requests)" if "per_request" in row else row["error"]))
            rows.append(row)
    return {"valgrind": how, "rows": rows, "ratios": ins.ratios(rows),
            "load": f"closed loop, {spec.connections} connections, {spec.duration:g} s counted after a "
                    f"warm-up of at least {spec.warmup_requests} requests"}


def _extra(a: argparse.Namespace) -> list[str]:
    """Extra mitmdump arguments: the GC pause logger when --gc-stats is on."""
    return ["-s", str(HERE / "gcstats.py")] if a.gc_stats else []


def _last_error(log_text: str) -> str:
    """The exception line of a traceback in a log, else the log's last line."""
    lines = [x.strip() for x in log_text.splitlines() if x.strip()]
    errs = [x for x in lines if re.match(r"^[A-Za-z_.]*(Error|Exception)\b.*:", x)]
    return _oneline(errs[-1] if errs else (lines[-1] if lines else "no output"), 300)


def _oneline(s: str, n: int = 600) -> str:
    s = " ".join(s.split())
    return s if len(s) <= n else "…" + s[-n:]


if __name__ == "__main__":
    sys.exit(main())
