"""Content-Encoding codec: header parsing, round trips, interop, bounds, bombs and malformed input."""

from __future__ import annotations

import gzip
import random
import time
import tracemalloc
import zlib

import brotli
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloakgate.core.codecs import encoding
from cloakgate.core.errors import BodyError

try:
    from compression import zstd  # type: ignore[import-not-found]
except ImportError:
    from backports import zstd  # type: ignore[no-redef]

TOO_LARGE = "cloakgate.body.too_large"
MALFORMED = "cloakgate.body.malformed_encoding"
UNKNOWN = "cloakgate.body.unknown_encoding"
MiB = 1 << 20
RNG = random.Random(20240611)  # fixed seed: the same "random" bytes on every run

SINGLE = [("gzip",), ("x-gzip",), ("deflate",), ("br",), ("zstd",)]
STACKS = SINGLE + [("gzip", "br"), ("br", "gzip"), ("zstd", "gzip"), ("deflate", "zstd"), ("gzip", "gzip"),
                   ("identity", "gzip", "identity"), ("br", "zstd", "deflate", "gzip")]

PROPS = settings(database=None, deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow])


def code_of(fn, *args, **kwargs) -> str:
    with pytest.raises(BodyError) as e:
        fn(*args, **kwargs)
    return e.value.code


# --- header --------------------------------------------------------------------------------------

@pytest.mark.parametrize("header,expected", [
    (None, ()),
    ("", ()),
    ("identity", ()),
    ("IDENTITY", ()),
    ("gzip", ("gzip",)),
    ("GZIP, br", ("gzip", "br")),
    (" x-gzip ,identity,\tzstd ", ("x-gzip", "zstd")),
    ("gzip,,br,", ("gzip", "br")),
    ("deflate", ("deflate",)),
    ("br, br", ("br", "br")),
    ("gzip, br, zstd, deflate", ("gzip", "br", "zstd", "deflate")),
])
def test_parse_content_encoding(header, expected):
    assert encoding.parse_content_encoding(header) == expected


@pytest.mark.parametrize("header", [
    "compress", "gzip, snappy", "gzip;q=1", "none", "deflateraw", "x-compress", "gzip br",
    "gzip,gzip,gzip,gzip,gzip",  # more than MAX_CODINGS
])
def test_parse_content_encoding_refuses(header):
    with pytest.raises(BodyError) as e:
        encoding.parse_content_encoding(header)
    assert e.value.code == UNKNOWN and e.value.status_hint == 415


@pytest.mark.parametrize("fn", [
    lambda: encoding.decode(b"x", ("snappy",), max_size=10),
    lambda: encoding.decode(b"", ("gzip", "lz4"), max_size=10),
    lambda: encoding.decode(b"x", ("gzip",) * (encoding.MAX_CODINGS + 1), max_size=10),
    lambda: encoding.encode(b"x", ("compress",)),
])
def test_unknown_codings_are_refused_by_decode_and_encode(fn):
    assert code_of(fn) == UNKNOWN


# --- round trips and interop ---------------------------------------------------------------------

SAMPLES = [b"", b"a", b"hello world " * 500, bytes(range(256)) * 40, RNG.randbytes(70_000), b"\x00" * 200_000]


@pytest.mark.parametrize("encs", STACKS)
@pytest.mark.parametrize("data", SAMPLES, ids=lambda d: f"len{len(d)}")
def test_round_trip(encs, data):
    assert encoding.decode(encoding.encode(data, encs), encs, max_size=MiB) == data


@PROPS
@given(st.binary(max_size=3000), st.sampled_from(STACKS))
def test_round_trip_property(data, encs):
    assert encoding.decode(encoding.encode(data, encs), encs, max_size=1 << 16) == data


def _raw_deflate(data: bytes) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def _zstd_frames(data: bytes) -> bytes:
    skippable = (0x184D2A50).to_bytes(4, "little") + (3).to_bytes(4, "little") + b"xyz"
    half = len(data) // 2
    return skippable + zstd.compress(data[:half], level=19) + skippable + zstd.compress(data[half:], level=3)


PLAIN = b"The quick brown fox jumps over the lazy dog. " * 100


@pytest.mark.parametrize("encs,blob", [
    (("gzip",), gzip.compress(PLAIN, compresslevel=9)),
    (("gzip",), gzip.compress(PLAIN[:100]) + gzip.compress(PLAIN[100:])),  # concatenated members
    (("x-gzip",), gzip.compress(PLAIN, mtime=12345)),
    (("deflate",), zlib.compress(PLAIN, 9)),  # zlib-wrapped (the standard)
    (("deflate",), _raw_deflate(PLAIN)),  # raw deflate (what some servers send)
    (("br",), brotli.compress(PLAIN, quality=11)),
    (("br",), brotli.compress(PLAIN, quality=0, mode=brotli.MODE_TEXT)),
    (("zstd",), zstd.compress(PLAIN, level=19)),
    (("zstd",), _zstd_frames(PLAIN)),  # several frames and skippable frames
    (("gzip", "br"), brotli.compress(gzip.compress(PLAIN))),
], ids=lambda v: "-".join(v) if isinstance(v, tuple) else "")
def test_decodes_what_other_encoders_produce(encs, blob):
    assert encoding.decode(blob, encs, max_size=MiB) == PLAIN


@pytest.mark.parametrize("encs,decompress", [
    (("gzip",), gzip.decompress),
    (("deflate",), zlib.decompress),  # zlib format, not raw deflate
    (("br",), brotli.decompress),
    (("zstd",), zstd.decompress),
    (("gzip", "br"), lambda b: gzip.decompress(brotli.decompress(b))),
])
def test_encode_is_readable_by_standard_decoders(encs, decompress):
    assert decompress(encoding.encode(PLAIN, encs)) == PLAIN


def test_encode_is_deterministic_and_gzip_has_no_mtime():
    a = encoding.encode(PLAIN, ("gzip",))
    assert a == encoding.encode(PLAIN, ("x-gzip",)) == gzip.compress(PLAIN, compresslevel=1, mtime=0)
    assert a[4:8] == b"\x00\x00\x00\x00"
    assert encoding.encode(PLAIN, ()) == PLAIN and encoding.encode(PLAIN, ("identity",)) == PLAIN


def test_empty_body_decodes_to_empty_whatever_the_codings():
    assert encoding.decode(b"", ("gzip", "br", "zstd"), max_size=0) == b""
    assert encoding.decode(b"plain", (), max_size=1) == b"plain"  # no codings: nothing to bound


def test_negative_max_size_is_a_programming_error():
    with pytest.raises(ValueError):
        encoding.decode(b"x", ("gzip",), max_size=-1)


# --- bounds --------------------------------------------------------------------------------------

@pytest.mark.parametrize("encs", SINGLE)
@pytest.mark.parametrize("data", [b"x", RNG.randbytes(5000), b"ab" * 100_000], ids=lambda d: f"len{len(d)}")
def test_bound_is_exact_per_stage(encs, data):
    blob = encoding.encode(data, encs)
    assert encoding.decode(blob, encs, max_size=len(data)) == data
    assert code_of(encoding.decode, blob, encs, max_size=len(data) - 1) == TOO_LARGE


def test_bound_applies_to_every_stage():
    inner = encoding.encode(b"\x00" * 50_000, ("gzip",))  # small outer output, large inner output
    blob = encoding.encode(inner, ("br",))
    with pytest.raises(BodyError) as e:
        encoding.decode(blob, ("gzip", "br"), max_size=len(inner) + 10)
    assert e.value.code == TOO_LARGE and e.value.status_hint == 413


BOMB_STACKS = SINGLE + [("gzip", "br"), ("br", "zstd"), ("zstd", "gzip"), ("gzip", "gzip")]


@pytest.fixture(scope="module")
def bombs() -> dict[tuple[str, ...], bytes]:
    zeros = b"\x00" * (10 * MiB)
    return {encs: encoding.encode(zeros, encs) for encs in BOMB_STACKS}


@pytest.mark.parametrize("encs", BOMB_STACKS)
def test_decompression_bomb_is_refused_quickly_without_inflating(encs, bombs):
    blob = bombs[encs]
    assert len(blob) < 100_000  # 10 MiB of zeros
    tracemalloc.start()
    try:
        t0 = time.perf_counter()
        with pytest.raises(BodyError) as e:
            encoding.decode(blob, encs, max_size=MiB)
        elapsed = time.perf_counter() - t0
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert e.value.code == TOO_LARGE and e.value.status_hint == 413
    assert peak < 2 * MiB, peak  # about max_size plus one step, never the 10 MiB
    assert elapsed < 2.0


def test_zstd_window_over_8_mib_is_refused():
    def frame(window_log: int) -> bytes:
        c = zstd.ZstdCompressor(options={zstd.CompressionParameter.window_log: window_log})
        return c.compress(b"abc" * 10) + c.flush(zstd.ZstdCompressor.FLUSH_FRAME)  # no pledged size

    assert encoding.decode(frame(23), ("zstd",), max_size=100) == b"abc" * 10
    assert code_of(encoding.decode, frame(24), ("zstd",), max_size=100) == MALFORMED


@pytest.mark.parametrize("encs,unit", [
    (("gzip",), gzip.compress(b"a")),
    (("zstd",), zstd.compress(b"a", level=1)),
])
def test_number_of_members_or_frames_is_bounded(encs, unit):
    assert encoding.decode(unit * encoding.MAX_FRAMES, encs, max_size=MiB) == b"a" * encoding.MAX_FRAMES
    assert code_of(encoding.decode, unit * (encoding.MAX_FRAMES + 1), encs, max_size=MiB) == MALFORMED


# --- malformed input -----------------------------------------------------------------------------

GOOD = {encs: encoding.encode(PLAIN[:700] + RNG.randbytes(300), encs) for encs in STACKS}


@pytest.mark.parametrize("encs", STACKS)
@pytest.mark.parametrize("cut", ["one", "half", "all_but_one"])
def test_truncated_streams_are_malformed(encs, cut):
    blob = GOOD[encs]
    n = {"one": 1, "half": len(blob) // 2, "all_but_one": len(blob) - 1}[cut]
    assert code_of(encoding.decode, blob[:n], encs, max_size=MiB) == MALFORMED


@pytest.mark.parametrize("encs", STACKS)
@pytest.mark.parametrize("tail", [b"\x00", b"junk", b"\x1f\x8b"])
def test_trailing_garbage_is_malformed(encs, tail):
    assert code_of(encoding.decode, GOOD[encs] + tail, encs, max_size=MiB) == MALFORMED


@pytest.mark.parametrize("encs", SINGLE)
@pytest.mark.parametrize("blob", [b"hello world, plain text", b'{"a": 1}', b"\x00" * 20, b"\xff" * 3])
def test_uncompressed_body_with_a_coding_is_malformed(encs, blob):
    assert code_of(encoding.decode, blob, encs, max_size=MiB) == MALFORMED


def test_gzip_does_not_accept_zlib_format_and_deflate_does_not_accept_gzip():
    assert code_of(encoding.decode, zlib.compress(PLAIN), ("gzip",), max_size=MiB) == MALFORMED
    assert code_of(encoding.decode, gzip.compress(PLAIN), ("deflate",), max_size=MiB) == MALFORMED


def test_corrupt_gzip_checksum_is_malformed():
    blob = bytearray(gzip.compress(PLAIN))
    blob[-5] ^= 0xFF  # CRC32
    assert code_of(encoding.decode, bytes(blob), ("gzip",), max_size=MiB) == MALFORMED


@PROPS
@given(st.binary(max_size=400), st.sampled_from(STACKS))
def test_arbitrary_bytes_never_raise_anything_but_body_errors(blob, encs):
    try:
        out = encoding.decode(blob, encs, max_size=4096)
    except BodyError as e:
        assert e.code in (MALFORMED, TOO_LARGE)
    else:
        assert len(out) <= 4096


@PROPS
@given(st.binary(min_size=1, max_size=2000), st.sampled_from(SINGLE), st.data())
def test_flipped_bytes_never_raise_anything_but_body_errors(data, encs, draw):
    blob = bytearray(encoding.encode(data, encs))
    i = draw.draw(st.integers(0, len(blob) - 1))
    blob[i] ^= draw.draw(st.integers(1, 255))
    try:
        encoding.decode(bytes(blob), encs, max_size=4096)
    except BodyError as e:
        assert e.code in (MALFORMED, TOO_LARGE)


def test_error_messages_hold_no_input():
    secret = b"SECRET-VALUE-123"
    for encs in SINGLE:
        with pytest.raises(BodyError) as e:
            encoding.decode(secret, encs, max_size=MiB)
        assert "SECRET" not in str(e.value)
