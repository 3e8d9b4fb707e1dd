"""The results as markdown: latency table, throughput table, ratios against issue 4's targets,
scale-out, key-service calls, microbenchmarks, profile. Reports numbers; asserts nothing.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import sweep
from micro import format_rows


def machine() -> dict:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        kb = int(
            next(
                x for x in Path("/proc/meminfo").read_text().splitlines() if x.startswith("MemTotal")
            ).split()[1]
        )
        mem = f"{kb / 1024 / 1024:.0f} GiB"
    except (OSError, StopIteration, ValueError):
        pass
    virt = "?"
    try:
        cmdline = Path("/proc/cmdline").read_text()
        virt = (
            "Firecracker microVM"
            if "firecracker" in cmdline
            else ("VM" if "hypervisor" in Path("/proc/cpuinfo").read_text() else "bare metal or unknown")
        )
    except OSError:
        pass
    t = time.perf_counter()
    for _ in range(200):
        time.sleep(0)
    syscall_us = (time.perf_counter() - t) / 200 * 1e6
    from importlib.metadata import version
    from importlib.util import find_spec

    try:  # the gateway's reveal scan splits in C where the install built cloakgate.core._segments
        split = "C" if find_spec("cloakgate.core._segments") else "pure Python (the C module was not built)"
    except ImportError:
        split = "?"
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory": mem,
        "kernel": platform.release(),
        "virtualization": virt,
        "python": platform.python_version(),
        "mitmproxy": version("mitmproxy"),
        "cryptography": version("cryptography"),
        "sleep0_us": round(syscall_us, 1),
        "segment_split": split,
    }


def _generator_text(params: dict) -> str:
    """Which load generator worker ran (results from before the C worker name none: Python)."""
    if params.get("generator") == "c":
        return "C worker `cgen.c`, epoll and a timerfd"
    why = params.get("generator_fallback")
    return "Python asyncio" + (f"; the C worker did not build: {why}" if why else "")


def _f(v: float | None, nd: int = 2) -> str:
    return "–" if v is None else f"{v:.{nd}f}"


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "**not met**")


def _at_sustainable(row: dict, what: str) -> float | None:
    """A figure of the passing step at the sustainable rate."""
    best = row.get("sustainable")
    got = [s.get(what) for s in row.get("steps", []) if s.get("ok") and s.get("rate") == best]
    return got[-1] if got else None


def cores_at_sustainable(row: dict) -> float | None:
    """Cores the proxies used (their CPU %, / 100) in the passing step at the sustainable rate."""
    cpu = _at_sustainable(row, "proxy_cpu_pct")
    return cpu / 100 if cpu else None


def per_core(row: dict) -> float | None:
    """Sustainable req/s per core the proxies used there."""
    cores = cores_at_sustainable(row)
    return row["sustainable"] / cores if cores and row.get("sustainable") else None


def targets(res: dict) -> list[dict]:
    out: list[dict] = []
    sw = {(s["config"], s["workload"]): s for s in res.get("sweep", [])}
    for wl, need in sweep.TARGET_RATIOS.items():
        g, p = sw.get(("gateway", wl)), sw.get(("passthrough", wl))
        if g and p and g.get("sustainable") and p.get("sustainable"):
            r = g["sustainable"] / p["sustainable"]
            rc = (res.get("paired") or {}).get(wl)
            ins = ((res.get("instructions") or {}).get("ratios") or {}).get(wl)
            aa = (res.get("aa") or {}).get(wl)
            out.append(
                {
                    "target": f"sustainable throughput, {wl}: gateway >= {need} x passthrough",
                    "measured": f"{r:.2f} x ({g['sustainable']:.0f} vs {p['sustainable']:.0f} req/s); "
                    f"closed-loop maximum {_f(rc)} x (median of paired rounds)"
                    + (f"; instructions per request {ins['ratio']:.3f} x" if ins else "")
                    + (f"; A/A, passthrough against itself: {_f(aa['ratio'])} x" if aa else ""),
                    "met": r >= need,
                }
            )
        else:
            out.append(
                {
                    "target": f"sustainable throughput, {wl}: gateway >= {need} x passthrough",
                    "measured": "not measured in this run",
                    "met": None,
                }
            )
    cr = {(c["config"], c["workload"]): c for c in res.get("constant", [])}
    rate = res["meta"]["params"]["rate"]
    for wl in res["meta"]["params"]["workloads"]:
        g, p = cr.get(("gateway", wl)), cr.get(("passthrough", wl))
        for q, slack in (("p90", 1.0), ("p99", 2.0)):
            name = f"{q} at {rate:g} req/s, {wl}: gateway <= passthrough + {slack:g} ms"
            if g and p:
                d = g[q] - p[q]
                out.append(
                    {
                        "target": name,
                        "measured": f"{d:+.2f} ms ({g[q]:.2f} vs {p[q]:.2f} ms)",
                        "met": d <= slack,
                    }
                )
            else:
                out.append({"target": name, "measured": "not measured in this run", "met": None})
    kc = res.get("keycalls")
    out.append(
        {
            "target": "key-service calls per request in steady state = 0",
            "measured": kc["text"] if kc else "not measured (no constant-rate run of the gateway)",
            "met": None if not kc or kc.get("calls") is None else kc["calls"] == 0,
        }
    )
    sc = res.get("scale") or {}
    if sc.get("rows") and len(sc["rows"]) > 1 and sc["rows"][0].get("sustainable"):
        one = sc["rows"][0]["sustainable"]
        for row in sc["rows"][1:]:
            n = row["n"]
            got = row.get("sustainable") or 0
            cl = row.get("closed_vs_one")
            cores, pc1, pcn = cores_at_sustainable(row), per_core(sc["rows"][0]), per_core(row)
            busy = _at_sustainable(row, "machine_busy_pct")
            ncores = (res["meta"].get("machine") or {}).get("cores", "?")
            allowed = (
                f"; what the machine allowed: the {n} gateways used {cores:.2f} cores there"
                + (f" (the machine's {ncores} cores {busy:.0f} % busy)" if busy is not None else "")
                + f", and per core they served {pcn / pc1:.2f} x what one did per core"
                if cores and pc1 and pcn
                else ""
            )
            out.append(
                {
                    "target": f"scale-out: {n} processes >= {sweep.SCALE_TARGET:g} x {n} x one",
                    "measured": f"{got / (n * one):.2f} x {n} x one "
                    f"({got:.0f} vs {one:.0f} req/s sustainable); "
                    f"closed-loop maximum {_f(cl / n if cl else None)} x {n} x one" + allowed,
                    "met": got >= sweep.SCALE_TARGET * n * one,
                }
            )
    else:
        out.append(
            {
                "target": f"scale-out: N processes >= {sweep.SCALE_TARGET:g} x N x one",
                "measured": sc.get("reason", "not measured"),
                "met": None,
            }
        )
    return out


def _target_checks(ladders) -> str:  # noqa: ANN001
    """One sentence on the ladders that took one more step at a target's rate (``sweep.check_target``)."""
    done = []
    for s in ladders:
        c = s.get("target_check")
        if c:
            who = f"N={s['n']}" if "n" in s else f"{s['workload']} gateway"
            lo, hi = c["between"]
            done.append(f"{who} at {c['rate']} req/s (between {lo:.0f} passing and {hi:.0f} failing): "
                        + ("pass" if c["ok"] else "FAIL"))
    if not done:
        return ""
    return ("Target checks (a target's rate fell between a ladder's highest passing and lowest failing rate; "
            "one more step at that very rate decided): " + "; ".join(done) + ".")


def ratios(res: dict) -> list[dict]:
    """Per workload: the gateway's numbers relative to the passthrough's from the same run."""
    cr = {(c["config"], c["workload"]): c for c in res.get("constant", [])}
    sw = {(s["config"], s["workload"]): s for s in res.get("sweep", [])}
    out = []
    for wl in dict.fromkeys([w for _, w in cr] + [w for _, w in sw]):
        g, p = cr.get(("gateway", wl)), cr.get(("passthrough", wl))
        gs, ps = sw.get(("gateway", wl)), sw.get(("passthrough", wl))
        if not ((g and p) or (gs and ps)):
            continue
        row = {
            "workload": wl,
            "p50_ratio": None,
            "p90_diff": None,
            "p99_diff": None,
            "cpu_added": None,
            "sustainable_ratio": None,
            "closed_ratio": (res.get("paired") or {}).get(wl),
        }
        if g and p:
            row.update(
                p50_ratio=g["p50"] / p["p50"] if p["p50"] else None,
                p90_diff=g["p90"] - p["p90"],
                p99_diff=g["p99"] - p["p99"],
            )
            if g.get("cpu_ms_per_req") is not None and p.get("cpu_ms_per_req") is not None:
                row["cpu_added"] = g["cpu_ms_per_req"] - p["cpu_ms_per_req"]
        if gs and ps and gs.get("sustainable") and ps.get("sustainable"):
            row["sustainable_ratio"] = gs["sustainable"] / ps["sustainable"]
        out.append(row)
    return out


def markdown(res: dict, png_name: str = "latency.png") -> str:
    m, p = res["meta"], res["meta"]["params"]
    mc = m["machine"]
    L: list[str] = []
    L.append(f"# cloakgate benchmark, {m['timestamp']} ({m['mode']})")
    L.append("")
    L.append(
        f"Machine: {mc['cpu']}, {mc['cores']} cores, {mc['memory']}, {mc['virtualization']}, Linux "
        f"{mc['kernel']}; Python {mc['python']}, mitmproxy {mc['mitmproxy']}, cryptography "
        f"{mc['cryptography']}; the reveal scan's segment split in {mc.get('segment_split', '?')}. "
        f"A `sleep(0)` system call takes {mc['sleep0_us']} µs here. {m['pinning']}"
    )
    L.append("")
    L.append(
        f"Client: {p['connections']} keep-alive HTTP/1.1 connections from {p['workers']} generator processes "
        f"({_generator_text(p)}, wrk2-style open loop, latency from each request's scheduled send time, "
        "HdrHistogram); "
        "plain HTTP on 127.0.0.1 on both hops, mitmdump as a reverse proxy (`-q`), gateway with "
        "`keep_host_header=true` and `Host: graph.microsoft.com`. The generator and the fake upstream "
        "share the "
        "machine's cores with the proxy."
    )
    keys = m.get("keys")
    if keys:
        L.append("")
        L.append(f"Keys: {keys['text']}.")
    wi = res.get("workload_info", {})
    L.append("")
    L.append(
        f"Workloads: **list** = Graph message list, 10 messages, {wi.get('list_bytes', '?')} bytes, "
        f"{wi.get('list_tokens', '?')} complete word tokens (+{wi.get('list_truncated', '?')} cut short by "
        f"`bodyPreview`); **light** = 50 single-token (deterministic) subjects, "
        f"{wi.get('light_bytes', '?')} bytes; "
        f"**write** = `POST /v1.0/me/messages` and `POST /v1.0/me/sendMail` in turn, "
        f"{wi.get('fields_protected', '11')} fields protected per request."
    )
    for name, c in res.get("configs", {}).items():
        if c.get("status") != "ok":
            L.append("")
            L.append(f"**{name}: skipped**: {c.get('reason')}")

    L.append("")
    L.append(
        f"## Constant rate: {p['rate']:g} req/s, {p['connections']} connections, {p['workers']} workers, "
        f"{p['duration']:g} s" + (
            f" in {p['segments']} segments of {p['duration'] / p['segments']:g} s, the configurations "
            "alternating (A B C, C B A, ...; histograms merged)" if p.get("segments", 1) > 1 else ""
        ) + f" (+{p['warmup']:g} s warm-up per segment)"
    )
    L.append("")
    L.append(
        "Latency in ms from the scheduled send time. CPU: the proxy process (utime+stime), % of one core; "
        "CPU/req: its CPU time per request."
    )
    L.append("")
    L.append(
        "| workload | configuration | p50 | p90 | p99 | p99.9 | max | req/s | errors | proxy CPU % | "
        "CPU ms/req |"
    )
    L.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for c in res.get("constant", []):
        L.append(
            f"| {c['workload']} | {c['config']} | {c['p50']:.2f} | {c['p90']:.2f} | {c['p99']:.2f} | "
            f"{c['p999']:.2f} | {c['max']:.2f} | {c['achieved']:.0f} | {c['errors'] + c['non2xx']} | "
            f"{_f(c.get('proxy_cpu_pct'), 0)} | {_f(c.get('cpu_ms_per_req'))} |"
        )
    L.append("")
    L.append(f"![latency by percentile]({png_name})")

    if res.get("sweep"):
        L.append("")
        L.append(
            f"## Highest sustainable rate (open loop: no errors, >= 95 % delivered, p90 <= "
            f"{p['slo_p90_ms']:g} ms, p99 <= {p['slo_p99_ms']:g} ms) and closed-loop maximum "
            f"({p['connections']} connections)"
        )
        L.append("")
        has_wrk = any(s.get("wrk") for s in res["sweep"])
        L.append(
            "| workload | configuration | closed-loop max req/s (median of rounds) | its p50 ms | "
            "sustainable req/s "
            "| proxy CPU % there |" + (" wrk req/s |" if has_wrk else "")
        )
        L.append("|---|---|---:|---:|---:|---:|" + ("---:|" if has_wrk else ""))
        for s in res["sweep"]:
            sus = s.get("sustainable")
            at = next((st for st in s.get("steps", []) if st["rate"] == sus and st["ok"]), None)
            sus_txt = ("–" if s["config"] == "direct" else "none passed") if sus is None else f"{sus:.0f}"
            if s["config"] == "direct":
                sus_txt = "not swept (generator-bound)"
            rounds = s["closed"].get("rounds", [])
            rtxt = f" ({', '.join(f'{x:.0f}' for x in rounds)})" if len(rounds) > 1 else ""
            L.append(
                f"| {s['workload']} | {s['config']} | {s['closed']['achieved']:.0f}{rtxt} | "
                f"{s['closed']['p50']:.1f} | "
                f"{sus_txt} | {_f(at['proxy_cpu_pct'], 0) if at else '–'} |"
                + (f" {_f(s.get('wrk'), 0)} |" if has_wrk else "")
            )
        grids = [(s["workload"], s["grid"]) for s in res["sweep"] if s.get("grid") and s["config"] == "gateway"]
        if grids:
            L.append("")
            L.append(
                "Open-loop steps: passthrough and gateway climb the same rates, fractions of one reference "
                "(the median of both configurations' closed-loop rounds), the finest step "
                + ", ".join(
                    f"{g['step'] * g['reference']:.0f} req/s on {wl} ({100 * g['step']:g} % of {g['reference']:.0f})"
                    for wl, g in grids
                )
                + "; a ratio of sustainable rates is measured to that step."
            )
        checks = _target_checks(s for s in res["sweep"] if s["config"] == "gateway")
        if checks:
            L.append("")
            L.append(checks)

    summary = ratios(res)
    if summary:
        L.append("")
        L.append("## Summary: gateway against passthrough, same run")
        L.append("")
        L.append(
            "| workload | p50 ratio | p90 diff ms | p99 diff ms | CPU ms/req added | sustainable ratio "
            "| closed-loop ratio |"
        )
        L.append("|---|---:|---:|---:|---:|---:|---:|")
        for r in summary:
            L.append(
                f"| {r['workload']} | {_f(r['p50_ratio'])} | {_f(r['p90_diff'])} | {_f(r['p99_diff'])} | "
                f"{_f(r['cpu_added'])} | {_f(r['sustainable_ratio'])} | {_f(r['closed_ratio'])} |"
            )
    L.append("")
    L.append("## Gateway against passthrough: the targets of issue 4")
    L.append("")
    L.append("| target | measured | |")
    L.append("|---|---|---|")
    for t in res.get("targets", []):
        L.append(f"| {t['target']} | {t['measured']} | {_verdict(t['met'])} |")
    kc = res.get("keycalls")
    if kc and kc.get("counted"):
        L.append("")
        L.append(f"Key-service calls counted: {kc['counted']}.")
    if res.get("aa"):
        L += aa_section(res["aa"], ratios(res))

    sc = res.get("scale") or {}
    L.append("")
    L.append("## Scale-out: N gateway processes behind HAProxy (TCP mode, round robin)")
    L.append("")
    if sc.get("rows"):
        L.append(f"{sc.get('note', '')}")
        L.append("")
        L.append(
            "| processes | closed-loop max req/s (rounds) | vs N x one | sustainable req/s | vs N x one "
            "| proxies' cores there | req/s per core | per core vs one |"
        )
        L.append("|---:|---:|---:|---:|---:|---:|---:|---:|")
        one = sc["rows"][0].get("sustainable")
        pc1 = per_core(sc["rows"][0])
        for r in sc["rows"]:
            rel = (r["sustainable"] / (r["n"] * one)) if one and r.get("sustainable") else None
            cl = r.get("closed_vs_one")
            rounds = ", ".join(f"{x:.0f}" for x in r["closed"].get("rounds", []))
            pc = per_core(r)
            L.append(
                f"| {r['n']} | {r['closed']['achieved']:.0f} ({rounds}) | "
                f"{_f(cl / r['n'] if cl else None)} | "
                f"{_f(r.get('sustainable'), 0)} | {_f(rel)} | {_f(cores_at_sustainable(r))} | {_f(pc, 0)} | "
                f"{_f(pc / pc1 if pc and pc1 else None)} |"
            )
        checks = _target_checks(sc["rows"])
        if checks:
            L.append("")
            L.append(checks)
        L.append("")
        L.append(
            "Cores: the proxies' CPU time in the passing step at the sustainable rate (all N together). "
            "On a machine whose cores the generator, the upstream and HAProxy share, N gateways cannot "
            "get N cores; per core says how well the gateways themselves scale."
        )
    else:
        L.append(f"Not measured: {sc.get('reason', 'disabled')}")

    if res.get("gc"):
        L.append("")
        L.append("## Garbage-collector pauses in the mitmdump processes (`--gc-stats`)")
        L.append("")
        L.append("Every full (generation 2) collection stops the proxy's event loop for its whole duration.")
        L.append("")
        L.append("| process | full collections | longest ms | total ms | gen0/1 collections over 5 ms |")
        L.append("|---|---:|---:|---:|---:|")
        for name, st in res["gc"].items():
            g2 = st.get("gen2", {"count": 0, "max_ms": 0.0, "total_ms": 0.0})
            small = sum(st.get(g, {}).get("count", 0) for g in ("gen0", "gen1"))
            L.append(f"| {name} | {g2['count']} | {g2['max_ms']:.0f} | {g2['total_ms']:.0f} | {small} |")
    if res.get("hook_times"):
        L += hook_times_section(res["hook_times"], res["meta"]["params"]["rate"])
    if res.get("instructions"):
        L += instructions_section(res["instructions"])
    if res.get("micro"):
        L.append("")
        L.append("## Microbenchmarks of the core (one process, no proxy)")
        L.append("")
        L.append(format_rows(res["micro"]))
    if res.get("profile"):
        L.append("")
        L.append("## Profile of the gateway process")
        L.append("")
        L.append(res["profile"])
    if res.get("notes"):
        L.append("")
        L.append("## Notes")
        L.append("")
        L += [f"- {n}" for n in res["notes"]]
    L.append("")
    L.append(f"Command: `{m['command']}`; total time {m.get('elapsed_s', 0):.0f} s.")
    return "\n".join(L) + "\n"


def aa_section(aa: dict, summary: list[dict]) -> list[str]:
    """``--aa``: what two identical passthroughs get in the same ladders, beside the gateway's ratio."""
    gw = {r["workload"]: r for r in summary}
    L = ["", "## A/A: passthrough against a second, identical passthrough (`--aa`)", ""]
    L.append(
        "A second passthrough climbed the same rates, its steps interleaved with the other two ladders: "
        "two identical configurations measured alike. How far their ratio lies from 1 is this run's "
        "noise floor for the throughput ratios (the gateway's are repeated here); a gateway ratio inside "
        "that distance of the target is not told apart from it by one run."
    )
    L.append("")
    L.append(
        "| workload | sustainable req/s A / B | sustainable ratio B/A | closed-loop ratio B/A "
        "| gateway sustainable ratio | gateway closed-loop ratio |"
    )
    L.append("|---|---:|---:|---:|---:|---:|")
    for wl, x in aa.items():
        sa, sb = x["sustainable"]
        g = gw.get(wl, {})
        L.append(
            f"| {wl} | {_f(sa, 0)} / {_f(sb, 0)} | {_f(x['ratio'])} | {_f(x['closed_ratio'])} "
            f"| {_f(g.get('sustainable_ratio'))} | {_f(g.get('closed_ratio'))} |"
        )
    return L


def hook_times_section(by_workload: dict, rate: float) -> list[str]:
    """``--hook-times``: wall time per call of the gateway's hooks inside mitmdump."""
    L = [
        "",
        "## The gateway's hooks timed inside mitmdump (`--hook-times`)",
        "",
        f"One gateway per workload at {rate:g} req/s, open loop, the warm-up not counted; wall time per "
        "call in µs. Compare with the core's microbenchmarks below: the hot loop (one process, calls "
        "back to back) and the rows \"after 3 ms idle\", which the in-proxy times follow.",
        "",
        "| workload | hook | calls | p50 | p90 | p99 | mean |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    totals = []
    for wl, got in by_workload.items():
        if got.get("error"):
            L.append(f"| {wl} | {got['error']} | | | | | |")
            continue
        hooks = got.get("hooks", {})
        for name, h in hooks.items():
            L.append(
                f"| {wl} | {name} | {h['calls']} | {h['p50']:.1f} | {h['p90']:.1f} | {h['p99']:.1f} | {h['mean']:.1f} |"
            )
        flows = max((h["calls"] for h in hooks.values()), default=0)
        per_flow = sum(h["mean"] * h["calls"] for h in hooks.values()) / flows if flows else 0.0
        totals.append(
            f"{wl}: {per_flow:.0f} µs per flow in the hooks; garbage collections that started inside a hook "
            f"took {got.get('gc_in_hooks_ms', 0):.1f} ms in all ({got.get('requests', 0)} requests)"
        )
    L.append("")
    L += [f"- {t}" for t in totals]
    return L


def instructions_section(got: dict) -> list[str]:
    """``--instructions``: instructions per request under callgrind, passthrough against gateway."""
    L = ["", "## Counted in instructions (`--instructions`, valgrind's callgrind)", ""]
    if got.get("reason"):
        return L + [f"Not counted: {got['reason']}."]
    L += [
        f"Each proxy alone under callgrind, {got['load']}; instructions per request = (the total counted "
        "- the proxy's idle count over as many seconds, taken just before the load once its start-up work "
        "had ended) / requests completed (the connections' set-up is spread over the requests of each "
        "count; counts of the same code repeat to a few percent). The gateway's per-second timers "
        "(rules watcher, key refresh) are off here. passthrough / gateway is the share of its "
        "throughput a CPU-bound proxy keeps with the gateway.",
        "",
        "| workload | passthrough instructions/req | gateway instructions/req | added "
        "| passthrough / gateway |",
        "|---|---:|---:|---:|---:|",
    ]
    for wl, r in got.get("ratios", {}).items():
        L.append(f"| {wl} | {r['passthrough']:,.0f} | {r['gateway']:,.0f} | {r['added']:+,.0f} "
                 f"({r['added_pct']:+.1f} %) | {r['ratio']:.3f} |")
    idle = [f"{r['workload']} {r['config']} {r['idle_per_s'] / 1e3:,.0f} K/s "
            f"({r['idle_per_request'] / 1e3:,.1f} K per request"
            f"{'' if r['idle_settled'] else ', NOT settled: start-up work was still running'})"
            for r in got.get("rows", []) if "idle_per_s" in r]
    if idle:
        L += ["", "Idle counts subtracted: " + "; ".join(idle) + "."]
    errors = [f"{r['workload']} {r['config']}: {r['error']}" for r in got.get("rows", []) if r.get("error")]
    if errors:
        L += [""] + [f"- not counted: {e}" for e in errors]
    return L
