"""`cloakgate-keys verify`: claims as JSON on success, one line and exit 2 on rejection."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cloakgate_keys.cli import main

VECTORS = Path(__file__).resolve().parents[2].parent / "shared" / "vectors"


def v(path: str) -> str:
    return str(VECTORS / path)


SGX_QUOTE, SGX_COLLATERAL = v("sgx/dcapqvl_sgx_quote_v3.bin"), v("sgx/dcapqvl_sgx_quote_v3_collateral.json")
MAA_TOKEN, MAA_JWKS = v("maa/cppsdk_sharedwus_sgx_token.jwt"), v("maa/cppsdk_sharedwus_certs.json")


ACCEPTED_CASES = [
    (
        ["--type", "sgx", SGX_QUOTE, "--collateral", SGX_COLLATERAL,
         "--now", "2025-07-01T00:00:00Z", "--accept-tcb", "ConfigurationAndSWHardeningNeeded"],
        {"tee": "sgx", "tcb_status": "ConfigurationAndSWHardeningNeeded", "debug": False,
         "report_data": b"Hello, world!".hex() + "00" * 51},
    ),
    (
        ["--type", "snp", v("snp/trustee_milan_vlek_report.bin"),
         "--collateral", v("snp/trustee_milan_vlek.der"), "--certs", v("certs"),
         "--now", "2025-06-01T00:00:00Z", "--min-tcb", "microcode=217", "--min-tcb", "snp=24"],
        {"tee": "snp", "tcb_status": "UpToDate", "signing_key": "vlek", "vmpl": 1},
    ),
    (
        ["--type", "maa", MAA_TOKEN, "--collateral", MAA_JWKS,
         "--issuer", "https://sharedwus.wus.attest.azure.net", "--now", "2022-06-01T00:00:00",
         "--allow-debug", "--accept-tcb", "NotEvaluated"],
        {"tee": "maa", "debug": True, "product_id": 1},
    ),
    (
        ["--type", "ratls", v("ratls/ccc_gramine_ratls_cert.pem"), "--now", "2024-01-01T00:00:00+00:00",
         "--allow-debug", "--accept-tcb", "NotEvaluated"],
        {"tee": "sgx", "measurement": "0866e7ca11b9f4efe4bf39b2607f4e1299f111920d96d95719080f01b62b7585"},
    ),
]


@pytest.mark.parametrize(("args", "expected"), ACCEPTED_CASES, ids=[c[0][1] for c in ACCEPTED_CASES])
def test_accepted_evidence_prints_claims(args: list[str], expected: dict[str, object],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", *args]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {key: out[key] for key in expected} == expected


REJECTED_CASES = [
    (["--type", "sgx", v("sgx/trustee_occlum_quote_v3_debug.dat"), "--now", "2024-01-01T00:00:00Z"], "debug"),
    (["--type", "sgx", SGX_QUOTE, "--collateral", SGX_COLLATERAL, "--now", "2025-07-01T00:00:00Z"],
     "tcb.status"),
    (["--type", "tdx", v("tdx/gotdxguest_quote_v5.dat"), "--now", "2026-02-03T01:00:00Z"], "tcb.unevaluated"),
    (["--type", "tdx", v("tdx/gotdxguest_quote_v4_spr_e4.dat"), "--now", "2053-07-01T00:00:00Z"],
     "tdx.pck_chain"),
    (["--type", "snp", v("snp/gosevguest_milan_report.bin"), "--now", "2022-09-24T01:00:00Z",
      "--collateral", v("snp/gosevguest_milan_vcek.der")], "snp.cert_chain"),
    (["--type", "maa", MAA_TOKEN, "--collateral", MAA_JWKS, "--now", "2022-06-01T00:00:00Z"],
     "maa.issuer_required"),
    (["--type", "ratls", v("ratls/ccc_rats_tls_cert.pem"), "--now", "2024-03-01T00:00:00Z"],
     "ratls.validity"),
]


@pytest.mark.parametrize(("args", "reason"), REJECTED_CASES, ids=[c[1] for c in REJECTED_CASES])
def test_rejected_evidence_prints_one_line_and_exits_2(args: list[str], reason: str,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert captured.err.startswith(f"cloakgate-keys verify: rejected: {reason}")


def test_unreadable_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", "--type", "sgx", v("sgx/no-such-quote.bin")]) == 2
    assert "cannot read" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["verify"],
        ["verify", "--type", "sgx"],
        ["verify", "--type", "tpm", "x"],
        ["verify", "--type", "sgx", "x", "--now", "yesterday"],
        ["verify", "--type", "snp", "x", "--min-tcb", "ucode"],
    ],
)
def test_usage_errors_exit_2(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_module_entry_point_runs_in_a_subprocess() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cloakgate_keys.cli", "verify",
         "--type", "tdx", v("tdx/dcapqvl_tdx_quote.bin"),
         "--collateral", v("tdx/dcapqvl_tdx_quote_collateral.json"), "--now", "2025-07-01T00:00:00Z"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert (result.returncode, result.stderr) == (0, "")
    claims = json.loads(result.stdout)
    assert (claims["tee"], claims["tcb_status"], claims["debug"]) == ("tdx", "UpToDate", False)
    assert claims["measurement"] == (
        "91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407de03ae6dc5f87f27428b2538873118b7"
    )
