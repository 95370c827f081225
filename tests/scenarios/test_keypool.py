"""The runner's RSA key pool (scenarios/keypool.py): real keys, made once per process.

* One environment's source never gives the same key twice; every source gives the
  same keys in the same order, made on first demand only; a pool adopts another's
  keys of the sizes it has not made (how ``-j N`` workers start).
* ``run`` hands the pool to every scenario (the issuer key certificate a card sends is
  the same in two scenarios, on workers too) unless ``fresh_keys``.
"""

from __future__ import annotations

from emv import tlv
from emv.crypto import oda
from emv.trace import EventKind
from scenarios.keypool import RsaKeyPool, process_pool
from scenarios.model import CardSpec, Scenario, ScenarioResult, Source, TapSpec
from scenarios.runner import run


class CountingGenerator:
    """oda.generate_rsa_key, counting its calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def __call__(self, bits: int, exponent: int) -> oda.RsaPrivateKey:
        self.calls.append((bits, exponent))
        return oda.generate_rsa_key(bits, exponent)


def test_a_source_gives_a_new_key_each_call_and_every_source_the_same_keys() -> None:
    generate = CountingGenerator()
    pool = RsaKeyPool(generate)
    first, second = pool.source(), pool.source()
    a = [first(1024, 3), first(1024, 3), first(1152, 65537)]
    assert len({key.public_key for key in a}) == 3
    assert a[2].public_key.size * 8 == 1152 and a[2].public_key.exponent == 65537
    b = [second(1024, 3), second(1152, 65537), second(1024, 3)]
    assert [key.public_key for key in b] == [a[0].public_key, a[2].public_key, a[1].public_key]
    assert generate.calls == [(1024, 3), (1024, 3), (1152, 65537)]
    assert repr(pool) == "RsaKeyPool(2 x 1024/3, 1 x 1152/65537)"
    assert "p=" not in repr(pool) and str(a[0].p) not in repr(pool)


def test_the_pool_refuses_what_the_generator_refuses() -> None:
    source = RsaKeyPool().source()
    try:
        source(1000, 3)
    except oda.OdaError as err:
        assert "1000 bits" in str(err)
    else:
        raise AssertionError("a 1000-bit key was made")


def test_the_process_pool_is_one_pool() -> None:
    assert process_pool() is process_pool()


def _issuer_certificate(result: ScenarioResult) -> bytes:
    """The issuer public key certificate (90) the card sent in its records."""
    (tap,) = result.taps
    for event in tap.trace.events:
        if event.kind is EventKind.RESPONSE and len(event.data) > 2:
            found = tlv.find(tlv.decode(event.data[:-2]), 0x90)
            if found is not None:
                return found.value
    raise AssertionError("no 90 in the trace")


def _scenarios() -> list[Scenario]:
    source = Source("keypool.yaml", 1)
    return [
        Scenario(
            id=f"s{n}",
            title="a tap",
            requirement="none",
            card=CardSpec("visa_qvsdc_plastic"),
            taps=(TapSpec("12.34", source),),
            source=source,
        )
        for n in range(2)
    ]


def test_run_gives_every_scenario_the_pools_keys_unless_fresh_keys() -> None:
    pooled = run(_scenarios())
    assert [r.verdict for r in pooled] == ["passed", "passed"]
    assert _issuer_certificate(pooled[0]) == _issuer_certificate(pooled[1])
    fresh = run(_scenarios(), fresh_keys=True)
    assert [r.verdict for r in fresh] == ["passed", "passed"]
    certificates = {_issuer_certificate(r) for r in [*fresh, pooled[0]]}
    assert len(certificates) == 3


def test_workers_start_with_the_keys_the_parent_made() -> None:
    (parent,) = run(_scenarios()[:1])
    on_workers = run(_scenarios(), jobs=2)
    assert [r.verdict for r in on_workers] == ["passed", "passed"]
    assert {_issuer_certificate(r) for r in on_workers} == {_issuer_certificate(parent)}


def test_a_pool_adopts_only_sizes_it_has_not_made() -> None:
    made = RsaKeyPool()
    mine = made.source()(1024, 3)
    other = RsaKeyPool()
    theirs = [other.source()(1024, 3), other.source()(1024, 65537)]
    made.adopt(other.keys())
    source = made.source()
    assert source(1024, 3) is mine
    assert source(1024, 65537) is theirs[1]
