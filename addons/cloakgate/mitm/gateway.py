"""The gateway addon: protect requests, reveal responses and websocket messages, fail closed.

Every request-side hook has one skeleton: guard, convert, call the core, apply, annotate, all inside
one ``try`` that turns any exception into a local refusal (mitmproxy forwards a flow unchanged when a
hook raises, so an escaped exception would be a plaintext leak).
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mitmproxy import command, ctx, http
from mitmproxy.exceptions import OptionsError
from mitmproxy.utils import asyncio_utils

from ..audit import AuditLog
from ..core import protect as core_protect
from ..core import reveal as core_reveal
from ..core.errors import CloakgateError, RuleError
from ..core.keyring import KeyRing
from ..core.rules import Pack, load_pack, pack_files
from ..keysource import DevKeySource, KeySource, service_source
from . import state
from .flows import (
    M_PACK,
    M_PROTECTED,
    M_REFUSED,
    M_ROUTE,
    M_SEEN,
    MARK_PROTECTED,
    Scope,
    add_comment,
    header,
    headers_get,
    logger,
    refuse,
    set_content_length,
)
from .guard import Guard

REPO = Path(__file__).resolve().parents[3]
DEFAULT_RULES = str(REPO / "rules")
DEFAULT_HOME = "~/.cloakgate"
SIM_GATEWAY_MEASUREMENT = hashlib.sha256(b"cloakgate gateway simulated v1").hexdigest()
READS_MEMO_SIZE = 4096
NOTES_MEMO_SIZE = 4096
_UNSEEN = object()
KEY_OPTIONS = frozenset({
    "cloakgate_keys", "cloakgate_dev_keyring", "cloakgate_keys_measurement", "cloakgate_keys_signer",
    "cloakgate_keys_allow_simulated", "cloakgate_tee", "cloakgate_tee_measurement", "cloakgate_sim_platform",
})


def parse_host_map(specs: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for spec in specs:
        host, sep, pack = spec.partition("=")
        if not sep or not host.strip() or not pack.strip():
            raise ValueError(f"host map entries look like host=pack, not {spec!r}")
        out[host.strip().lower().rstrip(".")] = pack.strip()
    return out


class RuleSet:
    """The packs of a rules directory, reloaded in place; a pack that fails keeps its last good version."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.by_file: dict[str, Pack] = {}
        self.errors: dict[str, CloakgateError] = {}
        self._stamp: dict[str, tuple[int, int]] = {}

    def _snapshot(self) -> dict[str, tuple[int, int]]:
        out = {}
        for p in pack_files(self.directory):
            try:
                st = p.stat()
            except OSError:
                continue
            out[str(p)] = (st.st_mtime_ns, st.st_size)
        return out

    def changed(self) -> bool:
        return self._snapshot() != self._stamp

    def load(self, *, strict: bool) -> list[str]:
        """(Re)load every file. Returns messages describing what changed. strict: raise on any error."""
        if not self.directory.is_dir():
            raise RuleError(f"rules directory {self.directory} does not exist", code="cloakgate.rules.missing")
        snap = self._snapshot()
        messages = []
        by_file: dict[str, Pack] = {}
        errors: dict[str, CloakgateError] = {}
        for f in snap:
            if self._stamp.get(f) == snap[f] and f in self.by_file:
                by_file[f] = self.by_file[f]
                continue
            try:
                by_file[f] = load_pack(Path(f))
                messages.append(f"loaded {f}")
            except RuleError as e:
                if strict:
                    raise
                errors[f] = e
                if f in self.by_file:
                    by_file[f] = self.by_file[f]
                    messages.append(f"FAILED {f}, its last good version stays in force: {e.message}")
                else:
                    messages.append(f"FAILED {f} (never loaded): {e.message}")
        for f in self.by_file:
            if f not in snap:
                messages.append(f"removed {f}")
        ids: dict[str, str] = {}
        for f, p in sorted(by_file.items()):
            if p.id in ids:
                e = RuleError(f"{f}:1: id: pack id '{p.id}' is already used by {ids[p.id]}", code="cloakgate.rules.invalid")
                if strict:
                    raise e
                errors[f] = e
                messages.append(f"FAILED {f}: {e.message}")
                continue
            ids[p.id] = f
        self.by_file = {f: p for f, p in by_file.items() if ids.get(p.id) == f}
        self.errors = errors
        self._stamp = snap
        return messages

    @property
    def packs(self) -> tuple[Pack, ...]:
        return tuple(p for _, p in sorted(self.by_file.items()))


class Gateway:
    name = "cloakgate.gateway"

    def __init__(self) -> None:
        self.rules: RuleSet | None = None
        self.host_map: dict[str, str] = {}
        self.scope = Scope()
        self.keys: KeySource | None = None
        self.ring: KeyRing | None = None  # a snapshot: the request path never calls the key source
        self.revealer: core_reveal.Revealer | None = None
        self.audit = AuditLog(None)
        self.max_body = 16 * 1024 * 1024
        self.response_max = 32 * 1024 * 1024
        self.poll = 1.0
        self.keys_refresh = 5.0
        self._task: asyncio.Task[Any] | None = None
        self._keys_task: asyncio.Task[Any] | None = None
        self._audit_task: asyncio.Task[Any] | None = None
        # True once packs and keys were installed. A gateway whose first configure failed (a script
        # reload while a pack is broken or the key service is down) has nothing in force: it leaves
        # every request unmarked, so the guard refuses those of the last good packs.
        self.ready = False
        self._running = False
        # Requests without a body that went out unchanged: (pack, method, path) -> route name or None,
        # for the scope and key ring in force (emptied when either is replaced).
        self._reads: dict[tuple[str, bytes, bytes], str | None] = {}
        # (pack, a body's packed counts) -> its reveal comment (None: nothing to say) and the revealed,
        # truncated and invalid tokens
        self._notes: dict[tuple[str, int], tuple[str | None, int, int, int]] = {}

    @property
    def packs(self) -> tuple[Pack, ...]:
        """The packs in force (the scope holds them)."""
        return self.scope.packs

    # --- lifecycle -------------------------------------------------------------------------------

    def load(self, loader: Any) -> None:
        loader.add_option("cloakgate_rules", str, DEFAULT_RULES, "Directory of rule packs (*.yaml).")
        loader.add_option(
            "cloakgate_keys", str, "dev",
            "Where data keys come from: the key service's https://host:port, or 'dev' "
            "(a DEVELOPMENT key ring file, see cloakgate_dev_keyring).",
        )
        loader.add_option("cloakgate_keys_measurement", Sequence[str], [],
                          "Key service measurements (hex) the gateway accepts.")
        loader.add_option("cloakgate_keys_signer", Sequence[str], [], "Key service signers (hex) the gateway accepts.")
        loader.add_option("cloakgate_keys_allow_simulated", bool, False,
                          "Accept a key service in a SIMULATED TEE (development only).")
        loader.add_option("cloakgate_tee", str, "simulated", "The gateway's own TEE, whose evidence the key "
                          "service checks: simulated, gramine or tsm.", choices=["simulated", "gramine", "tsm"])
        loader.add_option("cloakgate_tee_measurement", str, SIM_GATEWAY_MEASUREMENT,
                          "The measurement a simulated gateway claims (hex).")
        loader.add_option("cloakgate_sim_platform", str, "", "Directory of the simulated TEE platform (public key).")
        loader.add_option("cloakgate_keys_refresh", str, "5",
                          "Seconds between key refresh checks (released keys are cached in memory only).")
        loader.add_option(
            "cloakgate_dev_keyring", str, f"{DEFAULT_HOME}/dev-keyring.json",
            "File of the DEVELOPMENT key ring (created on first run, mode 0600).",
        )
        loader.add_option(
            "cloakgate_audit", str, f"{DEFAULT_HOME}/audit.jsonl",
            "Audit events as JSON lines (no values). Empty: to the log.",
        )
        loader.add_option("cloakgate_audit_buffer", str, "1", "Seconds routine audit events may wait in memory "
                          "before they are written (refusals are written at once; 0: every event at once).")
        loader.add_option("cloakgate_host_map", Sequence[str], [], "Map a deployment's own host to a pack: host=pack-id.")
        loader.add_option("cloakgate_max_body", int, self.max_body, "Largest protected request body in bytes.")
        loader.add_option("cloakgate_response_max", int, self.response_max, "Largest response body revealed, after decompression.")
        loader.add_option("cloakgate_rules_poll", str, "1.0", "Seconds between checks of the rules directory (0: no hot reload).")

    def configure(self, updated: set[str]) -> None:
        opts = ctx.options
        try:
            if "cloakgate_host_map" in updated:
                self.host_map = parse_host_map(opts.cloakgate_host_map)
            if "cloakgate_max_body" in updated:
                self.max_body = opts.cloakgate_max_body
            if "cloakgate_response_max" in updated:
                self.response_max = opts.cloakgate_response_max
            if "stream_large_bodies" in updated and opts.stream_large_bodies:
                # mitmproxy checks the size again as the body arrives and streams it from the buffer
                # without another requestheaders call: no hook can keep an in-scope body whole.
                raise ValueError("stream_large_bodies would stream request bodies past the gateway "
                                 "unprotected (mitmproxy decides while the body arrives); unset it")
            if "cloakgate_rules_poll" in updated:
                self.poll = float(opts.cloakgate_rules_poll)  # a str option: mitmproxy cannot parse float ones
            if updated & {"cloakgate_audit", "cloakgate_audit_buffer"}:
                buffer = float(opts.cloakgate_audit_buffer)
                if buffer < 0:
                    raise ValueError("cloakgate_audit_buffer is a number of seconds, 0 or more")
                self.audit.close()
                self.audit = AuditLog(opts.cloakgate_audit or None, buffer_seconds=buffer)
            if "cloakgate_keys_refresh" in updated:
                self.keys_refresh = float(opts.cloakgate_keys_refresh)
            if updated & KEY_OPTIONS:
                if opts.cloakgate_keys == "dev":
                    self.keys = DevKeySource(opts.cloakgate_dev_keyring)
                elif opts.cloakgate_keys.startswith("https://"):
                    self.keys = service_source(
                        opts.cloakgate_keys, measurements=opts.cloakgate_keys_measurement,
                        signers=opts.cloakgate_keys_signer, allow_simulated=opts.cloakgate_keys_allow_simulated,
                        sim_platform=opts.cloakgate_sim_platform or None, tee=opts.cloakgate_tee,
                        tee_measurement=opts.cloakgate_tee_measurement,
                    )
                else:
                    raise ValueError("cloakgate_keys is 'dev' or the key service's https:// URL")
            if "cloakgate_rules" in updated:
                rules = RuleSet(Path(opts.cloakgate_rules).expanduser())
                for msg in rules.load(strict=True):
                    logger.info("cloakgate rules: %s", msg)
                self.rules = rules
            if updated & (KEY_OPTIONS | {"cloakgate_rules", "cloakgate_host_map"}):
                self._install()
        except (CloakgateError, ValueError, OSError) as e:
            raise OptionsError(f"cloakgate: {e}") from None

    def _install(self) -> None:
        assert self.rules is not None and self.keys is not None
        packs = self.rules.packs
        missing = {p for p in self.host_map.values() if p not in {x.id for x in packs}}
        if missing:
            logger.warning("cloakgate: host map names unknown packs: %s", ", ".join(sorted(missing)))
        self._set_ring(self.keys.ring(p.id for p in packs))
        self.scope = Scope(packs, self.host_map)
        self._reads = {}
        state.SHARED.scope = self.scope
        self.ready = True
        if self._running:
            self._sync_guard()

    def _set_ring(self, ring: KeyRing) -> None:
        if ring is self.ring:
            return
        self.ring = ring
        self._reads = {}
        if self.revealer is None:
            self.revealer = core_reveal.Revealer(ring)
        else:
            self.revealer.set_ring(ring)

    async def _refresh_keys(self) -> None:
        """Keep the key snapshot fresh off the event loop; requests never wait for the key service."""
        while True:
            await asyncio.sleep(self.keys_refresh)
            try:
                keys, packs = self.keys, [p.id for p in self.packs]
                if keys is not None:
                    self._set_ring(await asyncio.to_thread(keys.ring, packs))
            except Exception as e:
                logger.error("cloakgate keys: refresh failed (%s)", type(e).__name__)

    def running(self) -> None:
        # Rule packs, keys and caches live as long as the process: move them out of the collector's
        # view so full collections (which pause every connection) stay short.
        gc.collect()
        gc.freeze()
        self._running = True
        self._sync_guard()
        self._banner()
        if self.poll > 0 and self._task is None:
            self._task = asyncio_utils.create_task(self._watch(), name="cloakgate rules watcher", keep_ref=True)
        if self.keys_refresh > 0 and self._keys_task is None:
            self._keys_task = asyncio_utils.create_task(self._refresh_keys(), name="cloakgate keys", keep_ref=True)
        if self._audit_task is None:
            self._audit_task = asyncio_utils.create_task(self._flush_audit(), name="cloakgate audit", keep_ref=True)

    def _sync_guard(self) -> None:
        """The guard stands in the addon chain exactly while no ready gateway does.

        Each addon in the chain costs every event of every flow (about 2 % of a passthrough request
        for the guard, counted in instructions), and a ready gateway marks every request itself.
        """
        addons = ctx.master.addons
        guard = addons.get(Guard.name)
        if self.ready and guard is not None:
            addons.remove(guard)
        elif not self.ready and guard is None:
            addons.add(Guard())

    def done(self) -> None:
        # Leaving the chain (script unloaded or reloaded, or shut-down): the guard takes over first,
        # whatever else fails here.
        self._running = False
        self.ready = False  # a gateway that left the chain marks nothing
        try:
            self._sync_guard()
        except Exception as e:
            logger.error("cloakgate: could not install the guard (%s)", type(e).__name__)
        for task in (self._task, self._keys_task, self._audit_task):
            if task is not None:
                task.cancel()
        self._task = self._keys_task = self._audit_task = None
        self.audit.close()

    def _banner(self) -> None:
        st = self.keys.status() if self.keys else {}
        logger.warning(
            "cloakgate: %d rule pack(s) [%s]; keys: %s",
            len(self.packs),
            ", ".join(f"{p.id} ({len(p.routes)} routes)" for p in self.packs),
            _describe_keys(st),
        )

    async def _flush_audit(self) -> None:
        """Buffered audit events reach the file within cloakgate_audit_buffer seconds, even when idle."""
        while True:
            await asyncio.sleep(self.audit.buffer_seconds or 1.0)
            try:
                self.audit.flush()
            except Exception as e:
                logger.error("cloakgate audit: flush failed (%s)", type(e).__name__)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.poll)
            try:
                self.reload_rules()
            except Exception as e:  # the watcher must survive anything; the old packs stay
                logger.error("cloakgate rules: reload failed (%s); previous packs stay in force", type(e).__name__)

    def reload_rules(self) -> list[str]:
        if self.rules is None or not self.rules.changed():
            return []
        msgs = self.rules.load(strict=False)
        gc.freeze()
        for m in msgs:
            (logger.error if m.startswith("FAILED") else logger.warning)("cloakgate rules: %s", m)
        self._install()
        self.audit.write("rules", "ok" if not self.rules.errors else "cloakgate.rules.invalid",
                         counts={"packs": len(self.packs), "failed": len(self.rules.errors)})
        return msgs

    # --- requests --------------------------------------------------------------------------------

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live:
            return
        # A replay runs the hooks again on the same flow: a mark from an earlier pass must not count
        # (the guard may be back in the chain by the request hook).
        flow.metadata.pop(M_SEEN, None)
        pack = None
        try:
            req = flow.request
            cl = header(req.headers, b"content-length")
            if cl is None and not req.stream:
                return  # nothing to decide before the body: the request hook looks the pack up
            pack = self.scope.pack_for(flow)
            if pack is None:
                return
            req.stream = False
            limit = min(self.max_body, pack.max_body)
            if cl is not None and cl.strip().isdigit() and int(cl) > limit:
                self._refuse(flow, pack.id, None, CloakgateError(
                    "request body exceeds the limit", code="cloakgate.body.too_large", status_hint=413))
        except Exception:
            self._refuse(flow, pack.id if pack else None, None, CloakgateError("internal error"))

    def request(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live or not self.ready:
            return
        flow.metadata[M_SEEN] = True
        pack = None
        route = None
        try:
            pack = self.scope.pack_for(flow)
            if pack is None:
                return
            flow.metadata[M_PACK] = pack.id
            req = flow.request
            body = req.raw_content
            if body is None:
                raise CloakgateError("request body was streamed", code="cloakgate.body.streamed", status_hint=500)
            if len(body) > min(self.max_body, pack.max_body):
                raise CloakgateError("request body exceeds the limit", code="cloakgate.body.too_large", status_hint=413)
            if self.ring is None:
                raise CloakgateError("no key ring", code="cloakgate.key.unavailable", status_hint=503)
            reads = None
            if not body:  # a read: the same pack, keys, method and path get the same answer
                reads = self._reads
                key = (pack.id, req.data.method, req.data.path)
                known = reads.get(key, _UNSEEN)
                if known is not _UNSEEN:
                    if known is not None:
                        flow.metadata[M_ROUTE] = known
                    return
            out = core_protect.protect_request(
                pack, req.method, req.path, req.headers.items(multi=True), body, self.ring, os.urandom
            )
            route = out.route
            if reads is not None and out.path_only and out.unchanged:
                if len(reads) >= READS_MEMO_SIZE:
                    reads.clear()
                reads[key] = route
            if route is None:
                return
            flow.metadata[M_ROUTE] = route
            if out.body is not None:
                req.raw_content = out.body
                if header(req.headers, b"transfer-encoding") is None:
                    set_content_length(req.headers, len(out.body))
            if out.path is not None:
                req.path = out.path
            for name, value in out.headers.items():
                req.headers[name] = value
            if out.protected:  # a request with nothing to protect is no event: its reveal may be
                flow.metadata[M_PROTECTED] = out.protected
                flow.marked = MARK_PROTECTED
                add_comment(flow, f"cloakgate {pack.id}/{route}: protected {out.protected} field(s) "
                                  f"({', '.join(out.schemes)}) with key {out.kid}")
                self.audit.write("protect", flow=flow.id, pack=pack.id, route=route,
                                 counts={"fields": out.protected, **{s: n for s, n in _by_scheme(out).items()}})
        except CloakgateError as e:
            self._refuse(flow, pack.id if pack else None, route, e)
        except Exception as e:
            logger.error("cloakgate: internal error (%s) while protecting; request refused", type(e).__name__)
            self._refuse(flow, pack.id if pack else None, route, CloakgateError("internal error"))

    def _refuse(self, flow: http.HTTPFlow, pack: str | None, route: str | None, e: CloakgateError) -> None:
        try:
            refuse(flow, e.code, e.status_hint, e.message, pack, route)
            self.audit.write("refuse", e.code, flow=flow.id, pack=pack, route=route)
        except Exception:
            flow.kill()

    # --- responses -------------------------------------------------------------------------------

    def response(self, flow: http.HTTPFlow) -> None:
        resp = flow.response
        meta = flow.metadata
        if resp is None or M_REFUSED in meta:
            return
        try:
            # The pack and route chosen when the request was protected: this response answers it.
            pack = self.scope.by_id.get(meta.get(M_PACK))  # type: ignore[arg-type]
            if pack is None or self.revealer is None:
                return
            route_name = meta.get(M_ROUTE)
            if resp.raw_content is None:  # streamed by another addon: its tokens went out as they were
                streamed = "cloakgate.body.streamed"
                self._note_reveal(flow, pack.id, route_name, core_reveal.RevealStats(), streamed)
                return
            route = pack.route_named.get(route_name) if route_name else None
            rules = route.reveal if route is not None else ()
            h = resp.headers
            ctype, coding, chunked = headers_get(h, b"content-type", b"content-encoding", b"transfer-encoding")
            known = None
            if coding is None and not rules:  # the steady state: every segment seen before, one call in C
                known = core_reveal.reveal_known(self.revealer, resp.raw_content, ctype)
            if known is not None:
                new = known[0] if self._note_known(flow, pack.id, route_name, known[1]) else None
            else:
                out = core_reveal.reveal_body(
                    self.revealer, resp.raw_content, ctype, coding,
                    max_size=self.response_max, pack=pack, reveal_rules=rules,
                )
                self._note_reveal(flow, pack.id, route_name, out.stats, out.error)
                new = out.body
            if new is not None:
                resp.raw_content = new
                if coding is not None:
                    h.pop("content-encoding", None)
                if chunked is None:
                    set_content_length(h, len(new))
        except Exception as e:  # a response that cannot be revealed keeps its tokens: no plaintext leaks
            logger.error("cloakgate: internal error (%s) while revealing; response left as is", type(e).__name__)

    def _note_reveal(self, flow: http.HTTPFlow, pack: str, route: str | None,
                     stats: core_reveal.RevealStats, error: str | None) -> None:
        text = reveal_comment(pack, stats, error)
        if text is not None:
            outcome = error or "ok"
            self._annotate(flow, text, pack, route, stats.revealed, stats.truncated, stats.invalid, outcome)

    def _note_known(self, flow: http.HTTPFlow, pack: str, route: str | None, packed: int) -> bool:
        """``_note_reveal`` for a body revealed from known segments, by its packed counts (the comment is
        remembered per pack and counts); whether anything was revealed."""
        note = self._notes.get((pack, packed))
        if note is None:
            stats = core_reveal.stats_of(packed)
            note = (reveal_comment(pack, stats, None), stats.revealed, stats.truncated, stats.invalid)
            if len(self._notes) >= NOTES_MEMO_SIZE:
                self._notes.clear()
            self._notes[(pack, packed)] = note
        text, revealed, truncated, invalid = note
        if text is not None:
            self._annotate(flow, text, pack, route, revealed, truncated, invalid)
        return revealed > 0

    def _annotate(self, flow: http.HTTPFlow, text: str, pack: str, route: str | None, revealed: int,
                  truncated: int, invalid: int, outcome: str = "ok") -> None:
        """A reveal's comment and mark on the flow, and its audit event."""
        add_comment(flow, text)
        if not flow.marked:
            flow.marked = MARK_PROTECTED
        self.audit.reveal(flow.id, pack, route, revealed, truncated, invalid, outcome)

    def websocket_message(self, flow: http.HTTPFlow) -> None:
        try:
            if flow.websocket is None or self.revealer is None:
                return
            msg = flow.websocket.messages[-1]
            if msg.from_client or msg.injected or not msg.is_text:
                return
            pack = self.scope.pack_for(flow)
            if pack is None:
                return
            data = msg.content
            ctxt = "json" if data.lstrip()[:1] in (b"{", b"[") else "text"
            new, stats = self.revealer.scan(data, ctxt)
            if new is not None:
                msg.content = new
            if stats.revealed or stats.skipped:
                self.audit.reveal(flow.id, pack.id, "websocket", stats.revealed, stats.truncated,
                                  stats.invalid)
        except Exception as e:
            logger.error("cloakgate: internal error (%s) in a websocket message; left as is", type(e).__name__)

    # --- commands --------------------------------------------------------------------------------

    @command.command("cloakgate.rules.check")
    def rules_check(self) -> str:
        """Check the rules directory without changing what is in force."""
        from ..cli import check_dir

        ok, report = check_dir(Path(ctx.options.cloakgate_rules).expanduser())
        (logger.warning if ok else logger.error)("cloakgate rules check:\n%s", report)
        return report

    @command.command("cloakgate.status")
    def status(self) -> str:
        """Packs in force, key source and its attestation status."""
        st = self.keys.status() if self.keys else {}
        lines = [f"keys: {_describe_keys(st)}"]
        for p in self.packs:
            lines.append(f"pack {p.id} ({p.saas}) from {p.source}: hosts {', '.join(p.hosts)}; {len(p.routes)} routes")
        if self.rules:
            for f, e in self.rules.errors.items():
                lines.append(f"FAILED {f}: {e.message}")
        return "\n".join(lines)


def reveal_comment(pack: str, stats: core_reveal.RevealStats, error: str | None) -> str | None:
    """The flow comment of a response's reveal (counts and codes, never values); None: nothing to say."""
    if not (stats.revealed or stats.skipped or error):
        return None
    parts = [f"revealed {stats.revealed} token(s)"]
    if stats.by_scheme:
        parts[0] += f" ({', '.join(sorted(stats.by_scheme))})"
    if stats.truncated:
        parts.append(f"{stats.truncated} truncated")
    if stats.invalid:
        parts.append(f"{stats.invalid} invalid")
    if error:
        parts.append(f"body unreadable: {error}")
    return f"cloakgate {pack}: " + ", ".join(parts)


def _describe_keys(st: dict[str, Any]) -> str:
    if st.get("source") == "dev":
        return f"{st.get('label')} key ring {st.get('file')} - DEVELOPMENT keys, not for production"
    sim = " - SIMULATED TEE, no hardware protection" if st.get("SIMULATED") else ""
    packs = ", ".join(f"{p}: {v['primary']}" for p, v in (st.get("packs") or {}).items()) or "none released"
    return (f"{st.get('label')} {st.get('url')} tee={st.get('tee')} measurement={st.get('measurement')} "
            f"tcb={st.get('tcb_status')} debug={st.get('debug')}; primary keys: {packs}"
            + (f"; last error {st.get('last_error')}" if st.get("last_error") else "") + sim)


def _by_scheme(out: core_protect.Outcome) -> dict[str, int]:
    res: dict[str, int] = {}
    for (_, s), n in out.counts.items():
        res[s] = res.get(s, 0) + n
    return res
