"""The gateway's audit log: routine events are buffered, refusals and failures are written at once."""

from __future__ import annotations

import json
import time
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from cloakgate.audit import AuditLog


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def test_routine_events_wait_refusals_do_not(tmp_path: Path):
    path = tmp_path / "audit.jsonl"
    log = AuditLog(str(path), buffer_seconds=3600)
    log.write("protect", flow="f1", pack="m365", counts={"fields": 2})
    log.write("reveal", flow="f1", pack="m365", counts={"revealed": 5})
    assert lines(path) == []  # in memory, not yet on disk
    log.write("refuse", "cloakgate.body.malformed", flow="f2", pack="m365")
    assert [e["action"] for e in lines(path)] == ["protect", "reveal", "refuse"]  # order kept, all written
    log.write("reveal", "cloakgate.body.unreadable", flow="f3")
    assert lines(path)[-1]["outcome"] == "cloakgate.body.unreadable"  # a failure is written through
    log.write("protect", flow="f4")
    log.close()
    assert lines(path)[-1]["flow"] == "f4"  # closing writes what was buffered


def test_buffer_interval_and_explicit_flush(tmp_path: Path):
    path = tmp_path / "audit.jsonl"
    log = AuditLog(str(path), buffer_seconds=0.05)
    log.write("protect", flow="f1")
    assert lines(path) == []
    log.flush()
    assert [e["flow"] for e in lines(path)] == ["f1"]
    log.write("protect", flow="f2")
    time.sleep(0.06)
    log.write("protect", flow="f3")  # the interval has passed: both reach the file
    assert [e["flow"] for e in lines(path)] == ["f1", "f2", "f3"]
    log.close()


def test_no_buffer_writes_every_event(tmp_path: Path):
    path = tmp_path / "audit.jsonl"
    log = AuditLog(str(path), buffer_seconds=0)
    log.write("protect", flow="f1")
    assert [e["flow"] for e in lines(path)] == ["f1"]
    assert path.stat().st_mode & 0o777 == 0o600
    log.close()
    log.close()  # idempotent


def test_event_time_is_iso8601_utc_with_milliseconds(tmp_path: Path):
    from datetime import UTC, datetime, timedelta

    path = tmp_path / "audit.jsonl"
    log = AuditLog(str(path), buffer_seconds=0)
    before = datetime.now(UTC)
    log.write("protect", flow="f1")
    after = datetime.now(UTC)
    t = lines(path)[0]["time"]
    assert len(t) == len("2026-01-01T00:00:00.000+00:00") and t.endswith("+00:00")
    assert before - timedelta(milliseconds=1) <= datetime.fromisoformat(t) <= after
    log.close()


def test_events_are_encoded_when_written_and_keep_their_own_time(tmp_path: Path):
    from datetime import datetime

    path = tmp_path / "audit.jsonl"
    log = AuditLog(str(path), buffer_seconds=3600)
    log.write("protect", flow="f1")
    time.sleep(0.05)
    before_flush = time.time()
    log.flush()
    (event,) = lines(path)
    assert datetime.fromisoformat(event["time"]).timestamp() < before_flush - 0.04  # queued time, not write time
    log.close()


def test_a_field_that_is_not_json_keeps_its_event_and_the_batch(tmp_path: Path):
    path = tmp_path / "audit.jsonl"
    log = AuditLog(str(path), buffer_seconds=3600)
    log.write("protect", flow="f1")
    log.write("reveal", flow="f2", counts=object())  # a programming error must not lose the batch
    log.write("refuse", "cloakgate.body.malformed", flow="f3")
    got = lines(path)
    assert [e["action"] for e in got] == ["protect", "reveal", "refuse"]
    assert got[1]["unencodable"] == ["counts", "flow"] and "counts" not in got[1]
    log.close()


def test_pending_events_are_bounded(tmp_path: Path):
    path = tmp_path / "audit.jsonl"
    log = AuditLog(str(path), buffer_seconds=3600)
    for i in range(AuditLog.MAX_PENDING - 1):
        log.write("reveal", flow=f"f{i}")
    assert lines(path) == []
    log.write("reveal", flow="last")  # the queue is full: everything is written
    assert len(lines(path)) == AuditLog.MAX_PENDING and lines(path)[-1]["flow"] == "last"
    log.close()


_json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=12)
)
_json_value = st.recursive(
    _json_leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)
_field_value = st.one_of(
    _json_value,
    st.dictionaries(st.text(max_size=8), st.integers(), max_size=4),  # counts, the common case
    st.builds(object),  # not JSON: the event keeps its fields' names only
)


@settings(max_examples=400, deadline=None)
@given(
    action=st.one_of(st.text(max_size=10), st.none()),
    outcome=st.text(max_size=10),
    fields=st.dictionaries(
        st.one_of(st.text(max_size=8), st.sampled_from(["time", "flow", "counts"])), _field_value, max_size=5
    ),
)
def test_event_line_is_what_the_json_encoder_writes(action, outcome, fields):
    """Lines are built field by field; they must equal the encoder's output for the event's dict."""
    from cloakgate import audit

    t = 1764340000.123
    encode = json.JSONEncoder(separators=(",", ":")).encode
    event = {"time": audit._iso(t), "action": action, "outcome": outcome}
    event.update({k: v for k, v in fields.items() if v is not None})
    try:
        want = encode(event)
    except (TypeError, ValueError):
        want = encode({"time": audit._iso(t), "action": action, "outcome": outcome, "unencodable": sorted(fields)})
    assert audit._line(t, action, outcome, fields) == want


_name = st.one_of(st.text(max_size=12), st.none(), st.integers())
_count = st.one_of(st.integers(min_value=0, max_value=2**70), st.booleans(), st.none())


@settings(max_examples=400, deadline=None)
@given(flow=_name, pack=_name, route=_name, revealed=_count, truncated=_count, invalid=_count)
def test_reveal_line_is_the_line_of_the_same_event(flow, pack, route, revealed, truncated, invalid):
    """The reveal template writes byte for byte what ``_line`` writes for the event it stands for (any
    text escaped alike, a route of None left out, counts that are not plain ints encoded by JSON)."""
    from cloakgate import audit

    t = 1764340000.987
    fields = {"flow": flow, "pack": pack, "route": route,
              "counts": {"revealed": revealed, "truncated": truncated, "invalid": invalid}}
    line = audit._reveal_line(t, flow, pack, route, revealed, truncated, invalid)
    assert line == audit._line(t, "reveal", "ok", fields)


def test_reveal_events_queue_and_land_like_written_ones(tmp_path: Path, caplog):
    path = tmp_path / "audit.jsonl"
    log = AuditLog(str(path), buffer_seconds=3600)
    log.write("protect", flow="f1", pack="m365", counts={"fields": 2})
    log.reveal("f1", "m365", "graph.messages.read", 50, 1, 2)
    log.reveal("f2", "m365", None, 0, 0, 3)
    assert lines(path) == []  # buffered like every routine event
    log.close()
    got = lines(path)
    assert [e["action"] for e in got] == ["protect", "reveal", "reveal"]
    assert got[1] == {"time": got[1]["time"], "action": "reveal", "outcome": "ok", "flow": "f1",
                      "pack": "m365", "route": "graph.messages.read",
                      "counts": {"revealed": 50, "truncated": 1, "invalid": 2}}
    assert "route" not in got[2] and got[2]["counts"]["invalid"] == 3
    log = AuditLog(str(path), buffer_seconds=3600)
    log.reveal("f4", "m365", "r", 0, 0, 0, "cloakgate.body.unreadable")  # a failure: written through
    assert lines(path)[-1]["outcome"] == "cloakgate.body.unreadable" and lines(path)[-1]["flow"] == "f4"
    log.close()
    with caplog.at_level("INFO", logger="cloakgate.audit"):
        AuditLog(None).reveal("f3", "m365", "r", 1, 0, 0)  # no file: the event goes to the log like any other
    assert '"action":"reveal","outcome":"ok","flow":"f3"' in caplog.text
