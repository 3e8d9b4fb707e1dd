"""AES-SIV (RFC 5297) from ``cryptography``: the primitive the deterministic scheme is built on.

Vectors: RFC 5297 Appendix A (tests/core/vectors/rfc5297.json, with their sources). A.1 is
deterministic authenticated encryption with one associated-data component; A.2 is nonce-based,
with two associated-data components and the nonce as the last component of the vector.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESSIV

DOC = json.loads((Path(__file__).parent / "vectors" / "rfc5297.json").read_text("utf-8"))
VECTORS = DOC["vectors"]
IDS = [v["name"].split()[0] for v in VECTORS]


def _inputs(v: dict) -> tuple[AESSIV, bytes, list[bytes], bytes]:
    ad = [bytes.fromhex(a) for a in v["ad"]]
    return AESSIV(bytes.fromhex(v["key"])), bytes.fromhex(v["plaintext"]), ad, bytes.fromhex(v["output"])


def test_vector_file():
    assert IDS == ["A.1", "A.2"]
    for v in VECTORS:
        assert v["output"] == v["siv"] + v["ciphertext"]
        assert len(bytes.fromhex(v["siv"])) == 16
        assert len(bytes.fromhex(v["ciphertext"])) == len(bytes.fromhex(v["plaintext"]))
        assert len(bytes.fromhex(v["key"])) == 32  # AEAD_AES_SIV_CMAC_256
    assert len(VECTORS[1]["ad"]) == 3  # AD1, AD2 and the nonce


@pytest.mark.parametrize("v", VECTORS, ids=IDS)
def test_encrypt_matches_rfc(v):
    siv, plaintext, ad, output = _inputs(v)
    assert siv.encrypt(plaintext, ad) == output


@pytest.mark.parametrize("v", VECTORS, ids=IDS)
def test_decrypt_matches_rfc(v):
    siv, plaintext, ad, output = _inputs(v)
    assert siv.decrypt(output, ad) == plaintext


@pytest.mark.parametrize("v", VECTORS, ids=IDS)
def test_encryption_is_deterministic(v):
    siv, plaintext, ad, output = _inputs(v)
    assert siv.encrypt(plaintext, ad) == siv.encrypt(plaintext, ad) == output


@pytest.mark.parametrize("v", VECTORS, ids=IDS)
@pytest.mark.parametrize("mask", [0x01, 0x80, 0xFF])
def test_any_flipped_byte_in_siv_or_ciphertext_is_rejected(v, mask):
    siv, _, ad, output = _inputs(v)
    for i in range(len(output)):  # 0..15 is the SIV, the rest the ciphertext
        bad = bytearray(output)
        bad[i] ^= mask
        with pytest.raises(InvalidTag):
            siv.decrypt(bytes(bad), ad)


@pytest.mark.parametrize("v", VECTORS, ids=IDS)
def test_truncated_or_extended_output_is_rejected(v):
    siv, _, ad, output = _inputs(v)
    for bad in (output[:-1], output[1:], output + b"\x00", output[:16] + output[17:]):
        with pytest.raises(InvalidTag):
            siv.decrypt(bad, ad)


@pytest.mark.parametrize("v", VECTORS, ids=IDS)
def test_associated_data_is_authenticated_component_by_component(v):
    siv, _, ad, output = _inputs(v)
    variants = [
        [],  # dropped
        ad + [b""],  # an extra, empty component still counts
        [ad[0] + b"\x00"] + ad[1:],  # changed
        [bytes([ad[0][0] ^ 1]) + ad[0][1:]] + ad[1:],
    ]
    if len(ad) > 1:
        variants.append([b"".join(ad)])  # the same bytes, one component instead of several
        variants.append(ad[::-1])  # S2V is ordered
        variants.append(ad[:-1])  # the nonce dropped
    for bad_ad in variants:
        assert bad_ad != ad
        with pytest.raises(InvalidTag):
            siv.decrypt(output, bad_ad)


def test_wrong_key_is_rejected():
    v = VECTORS[0]
    _, _, ad, output = _inputs(v)
    other = bytearray(bytes.fromhex(v["key"]))
    other[-1] ^= 1  # the CTR half of the key: S2V on the decrypted text no longer matches
    with pytest.raises(InvalidTag):
        AESSIV(bytes(other)).decrypt(output, ad)
