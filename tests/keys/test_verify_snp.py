"""SEV-SNP report verifier (VCEK and VLEK chains, Azure HCL wrapper) against shared/vectors/snp."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from cloakgate_keys.attestation import anchors
from cloakgate_keys.attestation.certs import parse_cert, split_certificates, verify_signature
from cloakgate_keys.attestation.errors import VerificationError
from cloakgate_keys.attestation.hcl import appraise_hcl_report
from cloakgate_keys.attestation.policy import NOT_EVALUATED
from cloakgate_keys.attestation.snp import appraise_snp_report, verify_amd_chain, verify_snp_report
from tests.keys.vectors import VECTORS, at, lookup

SNP = VECTORS / "snp"
CERTS = VECTORS / "certs"
AMD_CHAINS = sorted(p.name for p in CERTS.glob("amd_*.pem"))
MILAN_ASK, MILAN_ASVK, GENOA_ASK = "amd_milan_ask_ark.pem", "amd_milan_asvk_ark.pem", "amd_genoa_ask_ark.pem"
JAN_2024 = "2024-01-01T00:00:00Z"


def report(name: str) -> bytes:
    data = (SNP / name).read_bytes()
    return bytes.fromhex(data.decode()) if name.endswith(".hex") else data


def certs(leaf: str, chain: str | None = "amd_milan_ask_ark.pem") -> list[bytes]:
    out = split_certificates((SNP / leaf).read_bytes())
    return out + (split_certificates((CERTS / chain).read_bytes()) if chain else [])


ZERO48 = "00" * 48
MILAN_VCEK = {"signing_key": "vcek", "product": "Milan", "product_name": "Milan-B0", "signature_algo": 1}

# (report, certificates: leaf file and chain file, fixed now, facts as dotted paths into to_json())
VECTOR_FACTS: list[tuple[str, str, str | None, str, dict[str, Any]]] = [
    (
        "gosevguest_milan_report.bin",
        "gosevguest_milan_vcek.der",
        "amd_milan_ask_ark.pem",
        "2022-09-24T01:00:00Z",
        {
            "tee": "snp",
            "report_version": 2,
            "guest_svn": 0,
            "svn": 0,
            "policy": 0xB0000,
            "debug": True,
            "vmpl": 0,
            "platform_info": 0x1,
            "report_data": "0102030405" + "00" * 59,
            "measurement": "b07af9620f3b839b47996422ddec6058338951d984e31211"
                "5131ea82705eaf5b6bdf8a9ece31a5a608eb0cf2e4872b01",
            "host_data": "00" * 32,
            "id_key_digest": ZERO48,
            "author_key_digest": ZERO48,
            "family_id": "00" * 16,
            "image_id": "00" * 16,
            "report_id": "8edc638e1857c555d21f6b11bda3c8b1b5a09dba4852b4c8ee7aa2f16f22cc0a",
            "report_id_ma": "ff" * 32,
            "chip_id": "3ac3fe21e13fb0990eb28a802e3fb6a29483a6b0753590c951bdd3b8e5378618"
            "4ca39e359669a2b76a1936776b564ea464cdce40c05f63c9b610c5068b006b5d",
            "reported_tcb_raw": 4901323769462652930,
            "reported_tcb": {"bootloader": 2, "tee": 0, "snp": 5, "microcode": 68},
            "current_tcb": {"bootloader": 2, "tee": 0, "snp": 5, "microcode": 68},
            "committed_tcb": {"bootloader": 2, "tee": 0, "snp": 5, "microcode": 68},
            "launch_tcb": {"bootloader": 2, "tee": 0, "snp": 5, "microcode": 68},
            "current_firmware": {"major": 1, "minor": 49, "build": 3},
            "tcb_status": NOT_EVALUATED,
            **MILAN_VCEK,
        },
    ),
    (
        "trustee_milan_vcek_report.bin",
        "trustee_milan_vcek.der",
        "amd_milan_ask_ark.pem",
        "2024-01-01T00:00:00Z",
        {
            "report_version": 2,
            "guest_svn": 4,
            "policy": 0x3001F,
            "debug": False,
            "vmpl": 0,
            "family_id": "01" + "00" * 15,
            "image_id": "02" + "00" * 15,
            "report_data": "ec6c52d7533cc2c4f45be7849cf112ab82b2009fe7bd43e71ed08c14400ad7e2" + "00" * 32,
            "measurement": "a1f3930413247bb38cfc171579ea3c12d5fe4901f0c792f6"
                "3fd75d98f1ef827c23500644e0e692e6be917f9050d3d38c",
            "id_key_digest": "0356215882a825279a85b300b0b742931d113bf7e32dde2e50ffde7ec743ca49"
            "1ecdd7f336dc28a6e0b2bb57af7a44a3",
            "chip_id": "c38427a30d4c7af9d96f7a15b97269825a64cb76a2352ffd5d18115d89ad473f"
            "8e8c0bcd9a5d9286612bad4aadfb4426205a3b9e4fea82301135a170e477524e",
            "reported_tcb_raw": 8288875114175397891,
            "reported_tcb": {"bootloader": 3, "tee": 0, "snp": 8, "microcode": 115},
            "current_tcb.microcode": 206,
            "current_firmware": {"major": 1, "minor": 52, "build": 4},
            **MILAN_VCEK,
        },
    ),
    (
        "trustee_milan_vlek_report.bin",
        "trustee_milan_vlek.der",
        "amd_milan_asvk_ark.pem",
        "2025-06-01T00:00:00Z",
        {
            "report_version": 3,
            "policy": 0x30000,
            "debug": False,
            "vmpl": 1,
            "signing_key": "vlek",
            "platform_info": 0x27,
            "cpuid_fms": "190101",
            "chip_id": "00" * 64,
            "report_data": "819770b7e6ea6df8dd8fd4dd146b073c0bf4f3ce5b0977ecac486e3a05ed1bd5"
            "4e2a7ac1f5d1ca02e7d7d5ef9f73b8574fd9359e3a480d741a4478e8a7bc27ca",
            "measurement": "8922ebbdd00ec2c541f36a6e7a82a8773a7accb451ed67bc"
                "94e740dbe92c93c4e8c9af857f5ceeb5a493df2a570d7bf0",
            "reported_tcb": {"bootloader": 4, "tee": 0, "snp": 24, "microcode": 217},
            "committed_tcb.microcode": 219,
            "launch_tcb.microcode": 219,
            "current_tcb.microcode": 220,
            "product": "Milan",
            "product_name": "Milan",
            "csp_id": "CN=cc-us-east-2.amazonaws.com",
        },
    ),
    (
        "virtee_milan_report.hex",
        "virtee_milan_vcek.der",
        "amd_milan_ask_ark.pem",
        "2024-01-01T00:00:00Z",
        {
            "report_version": 2,
            "policy": 0x30000,
            "debug": False,
            "vmpl": 0,
            "report_data": "d447b55d197491bfe15cf298f9de9986b7a7c4be2468b4f6e2d53b71d7c64581"
            "0b0f2cdfca0040433be063fc1a8293f0f3f8dae7b79fecb3d1cd82bd6a93ebfd",
            "measurement": "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb424"
                "64bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81841f",
            "chip_id": "d49554ec717f4e5b0fe6b143bcf0405bd7ae304727edf46603f2a76aef6a3abc"
            "15d7af38db757039029f0efacfd08e244324884738c72b082e2f87a44d541eb6",
            "reported_tcb": {"bootloader": 3, "tee": 0, "snp": 8, "microcode": 115},
            **MILAN_VCEK,
        },
    ),
    (
        "cacisidecar_milan_report.bin",
        "cacisidecar_vcek_ask_ark.pem",  # VCEK, ASK and ARK as served by Azure THIM
        None,
        "2024-01-01T00:00:00Z",
        {
            "report_version": 2,
            "guest_svn": 2,
            "policy": 0x3001F,
            "debug": False,
            "vmpl": 0,
            "host_data": "cadd74f71ebb8fbf9782baab649612520f3c416bc5ce9ac768808ddc8d9b031c",
            "report_data": "ee986ff2bd7e3f22e29f640918627816cf8e23b9d9c312767168eab68c861c71" + "00" * 32,
            "measurement": "51068107cdc7ee3d89c7821b05bca6147eb77b2005ae7590"
                "50fc049b65a1b0beabc65a9d857acecf23225f5ec76849f5",
            "reported_tcb": {"bootloader": 3, "tee": 0, "snp": 8, "microcode": 115},
            **MILAN_VCEK,
        },
    ),
]


@pytest.mark.parametrize(
    ("name", "leaf", "chain", "now", "facts"), VECTOR_FACTS, ids=[v[0] for v in VECTOR_FACTS]
)
def test_vector_yields_provenance_facts(name: str, leaf: str, chain: str | None, now: str,
                                        facts: dict[str, Any]) -> None:
    claims = appraise_snp_report(report(name), certs=certs(leaf, chain), now=at(now)).to_json()
    assert {path: lookup(claims, path) for path in facts} == facts


def test_caci_host_data_is_sha256_of_decoded_policy() -> None:
    bundle = certs("cacisidecar_vcek_ask_ark.pem", None)
    claims = appraise_snp_report(report("cacisidecar_milan_report.bin"), certs=bundle, now=at(JAN_2024))
    policy = (SNP / "cacisidecar_uvm_security_policy.base64").read_bytes()
    assert claims.extra["host_data"] == hashlib.sha256(base64.b64decode(policy)).hexdigest()
    assert claims.extra["host_data"] != hashlib.sha256(policy).hexdigest()
    thim_chain = split_certificates((SNP / "cacisidecar_vcek_ask_ark.pem").read_bytes())[1:]
    assert thim_chain == split_certificates((CERTS / "amd_milan_ask_ark.pem").read_bytes())


def test_azure_hcl_report_binds_runtime_data() -> None:
    data = (SNP / "trustee_azure_cvm_hcl_report.bin").read_bytes()
    claims = appraise_hcl_report(data, certs=certs("trustee_azure_cvm_vcek_ask_ark.pem", None),
                                 now=at("2024-01-01T00:00:00Z"))
    runtime = data[1236 : 1236 + 1110]
    assert claims.report_data == hashlib.sha256(runtime).digest() + bytes(32)
    assert claims.extra["hcl"]["runtime_data_hash"] == (
        "b3fbad6514c83caeb0380882145e49f794229ef37c421b91fc47ff93556bafac"
    )
    assert sorted(claims.extra["hcl"]["runtime_data"]) == ["keys", "user-data", "vm-configuration"]
    assert [k["kid"] for k in claims.extra["hcl"]["runtime_data"]["keys"]] == ["HCLAkPub", "HCLEkPub"]
    assert claims.measurement == (
        "9ac48fcac8a2d88aeeff8d427ad4f2be0e3917c748a18bdf52cc317e7fe20308b459d5ef1a12e0c22944eb386d17c315"
    )
    assert (claims.debug, claims.extra["policy"], claims.extra["vmpl"], claims.extra["report_version"]) == (
        False, 0x3001F, 0, 2
    )
    assert claims.extra["reported_tcb"] == {"bootloader": 3, "tee": 0, "snp": 8, "microcode": 115}


@pytest.mark.parametrize(
    ("offset", "reason"),
    [(0, "hcl.parse"), (4, "hcl.parse"), (12, "hcl.parse"), (32 + 0x90, "snp.signature"),
     (1216 + 12, "hcl.parse"), (1236 + 20, "hcl.binding"), (1236 + 1109, "hcl.binding")],
)
def test_tampered_hcl_report_fails(offset: int, reason: str) -> None:
    data = bytearray((SNP / "trustee_azure_cvm_hcl_report.bin").read_bytes())
    data[offset] ^= 0x01
    with pytest.raises(VerificationError) as info:
        appraise_hcl_report(bytes(data), certs=certs("trustee_azure_cvm_vcek_ask_ark.pem", None),
                            now=at("2024-01-01T00:00:00Z"))
    assert info.value.reason == reason


def test_turin_vcek_chain_and_extensions() -> None:
    chain = verify_amd_chain(certs("virtee_turin_vcek.der", "amd_turin_ask_ark.pem"), signing_key="vcek",
                             now=at("2025-01-01T00:00:00Z"))
    assert (chain.product, chain.product_name, chain.hwid, chain.csp_id) == (
        "Turin", "Turin", bytes.fromhex("1e550a8ee5cf9f4d"), None
    )
    assert chain.spls == {"bootloader": 0, "tee": 0, "snp": 0, "microcode": 9, "fmc": 0}
    assert (chain.leaf.not_before.isoformat(), chain.leaf.not_after.isoformat()) == (
        "2024-11-06T21:14:00+00:00", "2031-11-06T21:14:00+00:00"
    )


def test_turin_vcek_does_not_chain_to_milan() -> None:
    with pytest.raises(VerificationError) as info:
        verify_amd_chain(certs("virtee_turin_vcek.der", "amd_milan_ask_ark.pem"), signing_key="vcek",
                         now=at("2025-01-01T00:00:00Z"))
    assert info.value.reason == "snp.cert_chain"


@pytest.mark.parametrize(
    "leaf", ["gosevguest_milan_vcek.der", "trustee_milan_vlek.der", "virtee_turin_vcek.der"]
)
def test_amd_leaf_certificates_have_serial_zero_and_parse_without_warnings(leaf: str) -> None:
    assert parse_cert((SNP / leaf).read_bytes()).serial == 0  # cryptography would warn (pytest: error)


ARK_FINGERPRINTS = {"milan": "Milan", "genoa": "Genoa", "turin": "Turin"}


@pytest.mark.parametrize("name", AMD_CHAINS)
def test_amd_intermediate_and_root_chains(name: str) -> None:
    intermediate, ark = (parse_cert(c) for c in split_certificates((CERTS / name).read_bytes()))
    product = ARK_FINGERPRINTS[name.split("_")[1]]
    assert hashlib.sha256(ark.der).hexdigest() == anchors.AMD_ARK_SHA256[product]
    verify_signature(ark, ark.public_key())
    verify_signature(intermediate, ark.public_key())
    key = ark.public_key()
    assert isinstance(key, rsa.RSAPublicKey) and key.key_size == 4096
    assert intermediate.issuer == ark.subject and intermediate.valid_at(at("2030-01-01T00:00:00Z"))


# --- policy -----------------------------------------------------------------------------------


def test_debug_guest_is_refused() -> None:
    with pytest.raises(VerificationError) as info:
        verify_snp_report(report("gosevguest_milan_report.bin"), certs=certs("gosevguest_milan_vcek.der"),
                          now=at("2022-09-24T01:00:00Z"), accepted_tcb=frozenset({NOT_EVALUATED}))
    assert info.value.reason == "debug"


@pytest.mark.parametrize(
    ("min_tcb", "accepted", "outcome"),
    [
        (None, None, "tcb.unevaluated"),
        (None, frozenset({NOT_EVALUATED}), NOT_EVALUATED),
        ({"bootloader": 3, "tee": 0, "snp": 8, "microcode": 115}, None, "UpToDate"),
        ({"microcode": 116}, None, "tcb.status"),
        ({"microcode": 116}, frozenset({"OutOfDate"}), "OutOfDate"),
        ({"fmc": 1}, None, "snp.min_tcb"),  # not a Milan component
    ],
)
def test_tcb_status_from_minimum_reported_tcb(min_tcb: dict[str, int] | None, accepted: frozenset[str] | None,
                                              outcome: str) -> None:
    def run() -> str:
        claims = verify_snp_report(
            report("trustee_milan_vcek_report.bin"), certs=certs("trustee_milan_vcek.der"), now=at(JAN_2024),
            min_tcb=min_tcb, accepted_tcb=accepted,
        )
        return claims.tcb_status

    if outcome[0].isupper():
        assert run() == outcome
    else:
        with pytest.raises(VerificationError) as info:
            run()
        assert info.value.reason == outcome


# --- time and chains --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "leaf", "chain", "now"),
    [
        ("gosevguest_milan_report.bin", "gosevguest_milan_vcek.der", MILAN_ASK, "2022-09-24T00:50:00Z"),
        ("gosevguest_milan_report.bin", "gosevguest_milan_vcek.der", MILAN_ASK, "2029-09-25T00:00:00Z"),
        ("trustee_milan_vcek_report.bin", "trustee_milan_vcek.der", MILAN_ASK, "2030-01-25T00:00:00Z"),
        ("trustee_milan_vlek_report.bin", "trustee_milan_vlek.der", MILAN_ASVK, "2024-12-10T00:00:00Z"),
        ("trustee_milan_vlek_report.bin", "trustee_milan_vlek.der", MILAN_ASVK, "2025-12-11T00:00:00Z"),
        ("virtee_milan_report.hex", "virtee_milan_vcek.der", MILAN_ASK, "2030-04-04T00:00:00Z"),
        ("cacisidecar_milan_report.bin", "cacisidecar_vcek_ask_ark.pem", None, "2022-11-28T00:00:00Z"),
        # wrong or incomplete chains
        ("trustee_milan_vlek_report.bin", "trustee_milan_vlek.der", MILAN_ASK, "2025-06-01T00:00:00Z"),
        ("trustee_milan_vcek_report.bin", "trustee_milan_vcek.der", GENOA_ASK, JAN_2024),
        ("trustee_milan_vcek_report.bin", "trustee_milan_vcek.der", None, JAN_2024),
        ("trustee_milan_vcek_report.bin", "trustee_milan_vlek.der", MILAN_ASVK, "2025-06-01T00:00:00Z"),
        ("trustee_milan_vlek_report.bin", "trustee_milan_vcek.der", MILAN_ASK, JAN_2024),
    ],
)
def test_wrong_now_or_chain_fails(name: str, leaf: str, chain: str | None, now: str) -> None:
    with pytest.raises(VerificationError) as info:
        appraise_snp_report(report(name), certs=certs(leaf, chain), now=at(now))
    assert info.value.reason == "snp.cert_chain"


def test_another_vcek_for_the_same_chip_family_does_not_verify_the_report() -> None:
    with pytest.raises(VerificationError) as info:
        appraise_snp_report(report("virtee_milan_report.hex"), certs=certs("trustee_milan_vcek.der"),
                            now=at("2024-01-01T00:00:00Z"))
    assert info.value.reason in {"snp.chip_id", "snp.signature"}


def test_ark_is_pinned(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(anchors.AMD_ARK_SHA256, "Milan", "00" * 32)
    with pytest.raises(VerificationError) as info:
        appraise_snp_report(report("virtee_milan_report.hex"), certs=certs("virtee_milan_vcek.der"),
                            now=at("2024-01-01T00:00:00Z"))
    assert info.value.reason == "snp.ark_pin"


# --- tampering --------------------------------------------------------------------------------

TRUSTEE = report("trustee_milan_vcek_report.bin")
FLIPS = [
    (0x000, "version", "snp.signature"),  # 2 -> 3, also a supported version
    (0x004, "guest_svn", "snp.signature"),
    (0x008, "policy", "snp.signature"),
    (0x00A, "policy.smt", "snp.signature"),
    (0x00C, "policy.must_be_zero", "snp.parse"),
    (0x02A, "image_id", "snp.signature"),
    (0x030, "vmpl", "snp.signature"),
    (0x034, "signature_algo", "snp.parse"),
    (0x038, "current_tcb", "snp.signature"),
    (0x048, "signer_info", "snp.signature"),
    (0x04C, "reserved", "snp.parse"),
    (0x050, "report_data", "snp.signature"),
    (0x090, "measurement", "snp.signature"),
    (0x0C0, "host_data", "snp.signature"),
    (0x180, "reported_tcb", "snp.tcb_mismatch"),
    (0x1A0, "chip_id", "snp.chip_id"),
    (0x1E8, "current_build", "snp.signature"),
    (0x250, "reserved_tail", "snp.parse"),
    (0x29F, "last_signed_byte", "snp.parse"),
    (0x2A0, "signature.r", "snp.signature"),
    (0x2C0, "signature.r_high", "snp.signature"),
    (0x2E8, "signature.s", "snp.signature"),
    (0x330, "signature.zero_tail", "snp.parse"),
    (0x49F, "last_byte", "snp.parse"),
]


@pytest.mark.parametrize(("offset", "where", "reason"), FLIPS, ids=[f[1] for f in FLIPS])
def test_flipped_byte_fails(offset: int, where: str, reason: str) -> None:
    tampered = bytearray(TRUSTEE)
    tampered[offset] ^= 0x01
    with pytest.raises(VerificationError) as info:
        appraise_snp_report(bytes(tampered), certs=certs("trustee_milan_vcek.der"), now=at(JAN_2024))
    assert info.value.reason == reason


@pytest.mark.parametrize(("offset", "reason"), [(42, "snp.signature"), (384, "snp.tcb_mismatch")])
def test_trustee_source_negative_tests_plus_one(offset: int, reason: str) -> None:
    tampered = bytearray(TRUSTEE)
    tampered[offset] = (tampered[offset] + 1) % 256
    with pytest.raises(VerificationError) as info:
        appraise_snp_report(bytes(tampered), certs=certs("trustee_milan_vcek.der"), now=at(JAN_2024))
    assert info.value.reason == reason


VCEK = (SNP / "trustee_milan_vcek.der").read_bytes()


@pytest.mark.parametrize("offset", [30, 200, 600, len(VCEK) - 600, len(VCEK) - 10])
def test_flipped_vcek_byte_fails(offset: int) -> None:
    tampered = bytearray(VCEK)
    tampered[offset] ^= 0x01
    with pytest.raises(VerificationError) as info:
        appraise_snp_report(TRUSTEE, certs=[bytes(tampered), *certs("trustee_milan_vcek.der")[1:]],
                            now=at("2024-01-01T00:00:00Z"))
    assert info.value.reason in {"snp.cert_chain", "snp.tcb_mismatch", "snp.chip_id", "snp.signature"}


@pytest.mark.parametrize("size", [0, 1183, 1185])
def test_wrong_length_fails(size: int) -> None:
    with pytest.raises(VerificationError) as info:
        appraise_snp_report(TRUSTEE.ljust(size, b"\x00")[:size], certs=certs("trustee_milan_vcek.der"),
                            now=at("2024-01-01T00:00:00Z"))
    assert info.value.reason == "snp.parse"
