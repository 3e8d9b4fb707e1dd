import os
import stat

from cloakgate.core.keyring import EmptyKeyRing
from cloakgate.keysource import DevKeySource


def test_dev_key_ring_is_created_private_and_stable(tmp_path):
    path = tmp_path / "sub" / "ring.json"
    ring = DevKeySource(path).ring(["m365", "slack"])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = DevKeySource(path).ring(["slack", "m365", "zendesk"])
    for pack in ("m365", "slack"):
        a, b = ring.primary(pack), again.primary(pack)
        assert (a.kid, a.material) == (b.kid, b.material)
    assert len({k.kid for k in again.keys()}) == 3
    assert again.lookup(ring.primary("m365").kid).pack == "m365"


def test_dev_key_ring_refuses_a_readable_file(tmp_path):
    path = tmp_path / "ring.json"
    DevKeySource(path).ring(["m365"])
    os.chmod(path, 0o644)
    assert isinstance(DevKeySource(path).ring(["m365"]), EmptyKeyRing)


def test_status_says_development(tmp_path):
    assert DevKeySource(tmp_path / "r.json").status()["label"] == "DEVELOPMENT"


def test_ring_accepts_any_iterable_of_packs(tmp_path):
    # regression: a generator of pack ids was consumed twice and the ring came out empty
    ring = DevKeySource(tmp_path / "r.json").ring(p for p in ["m365", "slack"])
    assert {k.pack for k in ring.keys()} == {"m365", "slack"}
