"""Custodian quorum with TOTP: wrong, replayed and too few codes refused; k valid codes succeed."""

from __future__ import annotations

import pyotp
import pytest

from cloakgate_keys.service.custodians import LOCKOUT, MAX_FAILURES, CustodianBook, QuorumRefused

T0 = 1_700_000_010.0  # inside a 30 s step


@pytest.fixture
def book() -> tuple[CustodianBook, dict[str, pyotp.TOTP]]:
    b, uris = CustodianBook.enroll(3, 2)
    totps = {}
    for uri in uris:
        t = pyotp.parse_uri(uri)
        assert isinstance(t, pyotp.TOTP) and t.issuer == "cloakgate-keys"
        totps[t.name.rsplit(":", 1)[-1]] = t
    assert set(totps) == {"c1", "c2", "c3"}
    return b, totps


def codes(totps, ids, at):
    return {i: totps[i].at(at) for i in ids}


def test_k_valid_codes_succeed(book):
    b, t = book
    out = b.authorize(codes(t, ["c1", "c3"], T0), T0)
    assert set(out.accepted) == {"c1", "c3"}


def test_too_few_codes_refused(book):
    b, t = book
    with pytest.raises(QuorumRefused) as e:
        b.authorize(codes(t, ["c2"], T0), T0)
    assert e.value.outcome.accepted == ("c2",) and e.value.status_hint == 401


def test_wrong_code_refused_even_with_quorum(book):
    b, t = book
    c = codes(t, ["c1", "c2"], T0)
    c["c3"] = "000000" if t["c3"].at(T0) != "000000" else "111111"
    with pytest.raises(QuorumRefused) as e:
        b.authorize(c, T0)
    assert e.value.outcome.refused == ("c3",)


@pytest.mark.parametrize("bad", ["12345", "abcdef", "1234567", 123456])
def test_malformed_codes_refused(book, bad):
    b, t = book
    with pytest.raises(QuorumRefused):
        b.authorize({"c1": t["c1"].at(T0), "c2": bad}, T0)


def test_unknown_custodian_refused(book):
    b, t = book
    with pytest.raises(QuorumRefused):
        b.authorize({"c1": t["c1"].at(T0), "c9": t["c2"].at(T0)}, T0)


def test_replay_refused(book):
    b, t = book
    first = codes(t, ["c1", "c2"], T0)
    b.authorize(first, T0)
    with pytest.raises(QuorumRefused):
        b.authorize(first, T0 + 1)  # same codes, same step
    # an older code (previous step) is refused too, although inside the window
    with pytest.raises(QuorumRefused):
        b.authorize(codes(t, ["c1", "c2"], T0 - 30), T0 + 2)


def test_next_step_works_and_adjacent_window(book):
    b, t = book
    b.authorize(codes(t, ["c1", "c2"], T0), T0)
    b.authorize(codes(t, ["c1", "c2"], T0 + 30), T0 + 31)
    # a code of the next step is accepted (clock skew), once
    b.authorize(codes(t, ["c1", "c2"], T0 + 90), T0 + 62)
    with pytest.raises(QuorumRefused):
        b.authorize(codes(t, ["c1", "c2"], T0 + 150), T0 + 62)  # two steps ahead: outside the window


def test_failures_rate_limited(book):
    b, t = book
    wrong = "000000" if t["c1"].at(T0) != "000000" else "111111"
    for _ in range(MAX_FAILURES):
        with pytest.raises(QuorumRefused):
            b.authorize({"c1": wrong, "c2": t["c2"].at(T0)}, T0)
    # now c1 is locked: even its valid code is refused, unchecked
    with pytest.raises(QuorumRefused) as e:
        b.authorize(codes(t, ["c1", "c3"], T0 + 30), T0 + 30)
    assert e.value.outcome.locked == ("c1",)
    # other custodians still work
    b.authorize(codes(t, ["c2", "c3"], T0 + 60), T0 + 60)
    # after the lockout, c1 works again and its counter resets
    later = T0 + LOCKOUT + 30
    b.authorize(codes(t, ["c1", "c2"], later), later)
    assert b.custodians["c1"].failures == 0


def test_lockout_doubles(book):
    b, t = book
    wrong = "000000" if t["c1"].at(T0) != "000000" else "111111"
    now = T0
    for _ in range(MAX_FAILURES):
        with pytest.raises(QuorumRefused):
            b.authorize({"c1": wrong}, now)
    first = b.custodians["c1"].locked_until - now
    now = b.custodians["c1"].locked_until
    with pytest.raises(QuorumRefused):
        b.authorize({"c1": wrong}, now)
    assert b.custodians["c1"].locked_until - now == 2 * first


def test_persistence_round_trip_keeps_replay_state(book):
    b, t = book
    used = codes(t, ["c1", "c2"], T0)
    b.authorize(used, T0)
    again = CustodianBook.from_json(b.to_json())
    with pytest.raises(QuorumRefused):
        again.authorize(used, T0)
    assert "secret" not in repr(again.custodians["c1"])


def test_threshold_bounds():
    with pytest.raises(ValueError):
        CustodianBook.enroll(2, 3)
    with pytest.raises(ValueError):
        CustodianBook.enroll(2, 0)
