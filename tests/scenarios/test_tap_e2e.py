"""Acceptance: a tap end to end, card -> terminal (Entry Point and kernels) -> token server.

Every environment is built by scenarios.tap with keys made now: a SoftIssuer for a
plastic card (its IMK-AC imported into the token server, the issuer host) or a
phone provisioned by the token server (HCE). The host is the real token server over
HTTPS on 127.0.0.1 (ApiServer with a throw-away TLS PKI) unless a test is about
offline behaviour.

* Every shipped profile (both kernels, plastic and HCE) is approved online, and the
  ARPC the host returned is recomputed here from the IMK with emv.crypto (the ARQC
  too): Visa CVN 18 ARPC method 2 with the CSU under the common session key, M/Chip
  CVN 16 method 1 under the ICC MK (hce/server/issuer_host.py), CBP-V method 1 under
  the LUK's session key, CBP-M method 2 under the SUK (docs/cbp.md).
* A plastic card approves offline when the terminal's floor limit and the card's
  offline limits allow it (Visa: no online cryptogram required; Mastercard: TACs
  that allow a TC), and declines offline (Visa: an offline-only reader over the
  card's limit; Mastercard: a Terminal Action Code - Denial bit that is set).
* Offline data authentication failures are caught, with the kernels' prescribed
  outcomes: a corrupted Issuer Public Key Certificate (one bit of tag 90 flipped in
  the READ RECORD answer: Kernel 3 goes online as the card's CTQ asks, or declines
  on an offline-only reader; Kernel 2 sets "CDA failed"), a CA Public Key Index the
  terminal has no key for, and another CA's key under the card's index.
* The same cryptogram sent to the host again is declined as a replay.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest

from emv import tlv
from emv.apdu import CryptogramType
from emv.bitfields import TVR
from emv.crypto import ac, cbp, kd
from emv.crypto.oda import CaKeyStore
from emv.link import Link
from emv.trace import EventKind
from hce.card import load_profile, shipped_profiles
from scenarios.tap import TapEnvironment
from terminal.config import Tacs, TerminalConfig, default_config, load_config
from terminal.outcome import Status
from terminal.pos import TransactionResult

PROFILES = [path.stem for path in shipped_profiles()]
PLASTIC = [name for name in PROFILES if load_profile(name).key_mode == "plastic"]
ONLINE_AMOUNT = 1234
OFFLINE_AMOUNT = 1000  # within both plastic cards' offline limits (USD 25.00, 50.00)
CSU_APPROVED = bytes.fromhex("00800000")  # hce/server/authorisation.py: byte 2 bit 8


def _config(**aid: object) -> TerminalConfig:
    """The shipped default configuration with ``aid`` changes on every AID."""
    base = default_config()
    return replace(base, aids=tuple(replace(entry, **aid) for entry in base.aids))


ONLINE = _config(floor_limit=0)


@pytest.fixture
def environment(request: pytest.FixtureRequest) -> Iterator[TapEnvironment]:
    """A TapEnvironment for the test's profile (parametrised ``profile``) over HTTPS."""
    with TapEnvironment(request.param, config=ONLINE, host="http") as env:
        yield env


def _sent(result: TransactionResult) -> dict[int, bytes]:
    return tlv.index(tlv.decode(result.icc_data))


def _expected_arpc(env: TapEnvironment, result: TransactionResult) -> bytes:
    """The ARQC checked and the ARPC recomputed from the IMK the environment made."""
    sent, answer = _sent(result), result.host
    assert answer is not None
    data = ac.CryptogramData.from_tags(sent)  # Book 2 Table 26 as the terminal sent it
    arqc, iad, atc = sent[0x9F26], sent[0x9F10], sent[0x9F36]
    profile = env.profile
    if env.phone is None:  # plastic: MK-AC option A of the card's PAN and PSN
        mk = kd.derive_icc_mk_a(env.imk_ac, profile.pan, profile.psn)
        version = profile.applications[0].cryptogram_version
        if version == "18":
            session = kd.derive_common_sk(mk, atc + bytes(6))
            assert ac.generate_ac(session, ac.visa_cvn18_input(data, iad)) == arqc
            assert answer.csu == CSU_APPROVED
            return ac.generate_arpc_2(session, arqc, CSU_APPROVED)
        assert version == "16", f"no independent check for CVN {version}"
        session = kd.derive_mastercard_sk(mk, atc, data.unpredictable_number)
        assert ac.generate_ac(session, ac.mastercard_cvn16_input(data, iad[2:8])) == arqc
        return ac.generate_arpc_1(mk, arqc, answer.arc)
    mk = kd.derive_icc_mk_a(env.imk_ac, env.phone.token_pan, env.phone.psn)
    parsed = cbp.parse_iad(iad)
    if isinstance(parsed, cbp.CbpVIad):
        luk = cbp.derive_luk(mk, parsed.key_index.to_bytes())
        assert cbp.cbp_v_arqc(luk, data, parsed) == arqc
        return ac.generate_arpc_1(cbp.cbp_v_session_key(luk, atc), arqc, answer.arc)
    suk = cbp.derive_suk(mk, atc)
    assert answer.csu is not None and cbp.cbp_m_arqc(suk, data, parsed) == arqc
    return ac.generate_arpc_2(suk, arqc, answer.csu)


# --- online, over HTTPS ------------------------------------------------------------------------


@pytest.mark.parametrize("environment", PROFILES, indirect=True)
def test_every_shipped_profile_is_approved_online_with_the_issuers_arpc(
    environment: TapEnvironment,
) -> None:
    result, trace = environment.tap(ONLINE_AMOUNT)
    assert result.online and result.host_error is None, result.outcome
    assert result.outcome.status == Status.APPROVED, result.outcome
    assert result.host is not None and result.host.reason == "approved"
    assert result.host.arc == b"00"
    assert result.host.arpc == _expected_arpc(environment, result)
    sent = _sent(result)
    assert sent[0x9F27] == bytes((CryptogramType.ARQC,))
    assert int(sent[0x9F02].hex()) == ONLINE_AMOUNT
    kernel = result.kernel
    assert kernel is not None and kernel.oda.result == "passed", kernel.oda
    expected_kernel = {"visa": "C-3", "mastercard": "C-2"}[environment.profile.brand]
    assert kernel.kernel == expected_kernel
    assert trace.commands()[0][:5] == bytes.fromhex("00A404000E"), "SELECT 2PAY.SYS.DDF01 first"
    assert trace.events[0].kind is EventKind.FIELD_ON


@pytest.mark.parametrize("environment", PROFILES, indirect=True)
def test_the_same_cryptogram_sent_again_is_declined_as_a_replay(
    environment: TapEnvironment,
) -> None:
    result, _ = environment.tap(ONLINE_AMOUNT)
    assert result.approved, result.outcome
    assert environment.host is not None
    again = environment.host.authorise(result.icc_data)
    assert (again.approved, again.reason, again.arpc) == (False, "replay", None)


def test_successive_taps_are_each_approved_with_a_new_atc() -> None:
    with TapEnvironment("mastercard_mchip_hce", config=ONLINE, host="inprocess") as env:
        atcs = []
        for amount in (100, 2_000, 5_000, 700, 1_234, 999, 4_321):  # more taps than keys
            result, _ = env.tap(amount)
            assert result.approved, result.outcome
            atcs.append(int.from_bytes(_sent(result)[0x9F36], "big"))
    assert atcs == sorted(set(atcs))


# --- offline -----------------------------------------------------------------------------------


def test_visa_plastic_approves_offline_under_the_floor_limit_with_fdda() -> None:
    with TapEnvironment(
        "visa_qvsdc_plastic", config=_config(floor_limit=5_000), host="http"
    ) as env:
        result, _ = env.tap(OFFLINE_AMOUNT)
    assert result.outcome.status == Status.APPROVED, result.outcome
    assert not result.online and result.host is None
    assert result.kernel is not None and result.kernel.cryptogram_type == CryptogramType.TC
    assert (result.kernel.oda.method, result.kernel.oda.result) == ("fDDA", "passed")


def test_mastercard_plastic_approves_offline_when_the_tacs_allow_a_tc() -> None:
    config = _config(floor_limit=5_000, tacs=Tacs(bytes(5), bytes(5), bytes(5)))
    with TapEnvironment("mastercard_mchip_plastic", config=config, host="http") as env:
        result, _ = env.tap(OFFLINE_AMOUNT)
    assert result.outcome.status == Status.APPROVED, result.outcome
    assert not result.online and result.host is None
    assert result.kernel is not None and result.kernel.cryptogram_type == CryptogramType.TC
    assert (result.kernel.oda.method, result.kernel.oda.result) == ("CDA", "passed")


@pytest.mark.parametrize(
    ("capabilities", "status"),
    [("C0F8C8", Status.DECLINED), ("E0F8C8", Status.TRY_ANOTHER_INTERFACE)],
    ids=["contactless-only", "with-contact-chip"],
)
def test_mastercard_plastic_declines_offline_on_a_denial_tac_bit(
    capabilities: str, status: Status
) -> None:
    """Book 3 §10.7: a TVR bit in the TAC - Denial asks for an AAC; Book C-2: the card's
    AAC is Declined, or Try Another Interface when the terminal has a contact chip
    reader (Terminal Capabilities byte 1 bit 6)."""
    floor_limit_exceeded = bytes.fromhex("0000008000")  # TVR byte 4 bit 8
    config = replace(
        _config(floor_limit=1_000, tacs=Tacs(bytes(5), floor_limit_exceeded, bytes(5))),
        capabilities=bytes.fromhex(capabilities),
    )
    with TapEnvironment("mastercard_mchip_plastic", config=config, host="http") as env:
        result, _ = env.tap(ONLINE_AMOUNT)
    assert result.outcome.status == status, result.outcome
    assert not result.online and result.host is None
    assert result.kernel is not None and result.kernel.cryptogram_type == CryptogramType.AAC
    assert TVR.from_bytes(result.kernel.tvr).floor_limit_exceeded


def test_visa_plastic_declines_offline_on_an_offline_only_reader_over_its_limit() -> None:
    offline_only = replace(
        _config(floor_limit=None, ttq=bytes.fromhex("2A000000")), terminal_type=0x23
    )
    with TapEnvironment("visa_qvsdc_plastic", config=offline_only, host="none") as env:
        result, _ = env.tap(3_000)  # over the card's offline limit (USD 25.00)
    assert result.outcome.status == Status.DECLINED, result.outcome
    assert not result.online
    assert result.kernel is not None and result.kernel.cryptogram_type == CryptogramType.AAC


# --- offline data authentication failures -------------------------------------------------------


class FlipIssuerCertificateBit:
    """A link that flips the last bit of the Issuer Public Key Certificate (90) in the
    READ RECORD answer that carries it."""

    def __init__(self, card: Link) -> None:
        self.card = card
        self.flipped = 0

    def power_on(self) -> bytes:
        return self.card.power_on()

    def power_off(self) -> None:
        self.card.power_off()

    def transceive(self, command: bytes) -> bytes:
        response = self.card.transceive(command)
        if command[1] != 0xB2 or len(response) <= 2:
            return response
        data = response[:-2]
        for _, obj in tlv.decode(data, strict=False)[0].walk():
            if obj.tag == 0x90:
                end = _value_end(data, obj)
                self.flipped += 1
                return data[: end - 1] + bytes((data[end - 1] ^ 0x01,)) + data[end:] + response[-2:]
        return response


def _value_end(data: bytes, obj: tlv.Tlv) -> int:
    """Where ``obj``'s value ends in ``data`` (the encoding keeps its offset)."""
    encoded = obj.to_bytes()
    start = data.index(encoded, obj.offset)
    return start + len(encoded)


def _flip_issuer_certificate(faults: list[FlipIssuerCertificateBit]) -> Callable[[Link], Link]:
    def wrap(card: Link) -> Link:
        faults.append(FlipIssuerCertificateBit(card))
        return faults[-1]

    return wrap


def _oda_failed(result: TransactionResult, reason: str) -> TVR:
    """The kernel's ODA failed for ``reason``; never an offline approval after it."""
    kernel = result.kernel
    assert kernel is not None and kernel.oda.result == "failed", kernel and kernel.oda
    assert reason in kernel.oda.reason, kernel.oda
    assert not (result.approved and not result.online), "approved offline after ODA failed"
    return TVR.from_bytes(kernel.tvr)


OFFLINE_CAPABLE = _config(floor_limit=5_000, tacs=Tacs(bytes(5), bytes(5), bytes(5)))


def test_visa_corrupted_issuer_certificate_goes_online_as_the_ctq_asks() -> None:
    """Book C-3: a TC whose fDDA failed, with CTQ "go online if ODA fails" (the plastic
    card's CTQ '2000') on an online-capable reader, is an Online Request."""
    faults: list[FlipIssuerCertificateBit] = []
    with TapEnvironment("visa_qvsdc_plastic", config=OFFLINE_CAPABLE) as env:
        result, _ = env.tap(OFFLINE_AMOUNT, fault=_flip_issuer_certificate(faults))
    assert [fault.flipped for fault in faults] == [1]
    assert _oda_failed(result, "issuer certificate").dda_failed
    assert result.entry.outcome.status == Status.ONLINE_REQUEST
    assert result.kernel is not None and result.kernel.cryptogram_type == CryptogramType.TC


def test_visa_corrupted_issuer_certificate_on_an_offline_only_reader_is_declined() -> None:
    """Book C-3: the same failure where the reader cannot go online and the CTQ does not
    ask to switch interface: Declined."""
    faults: list[FlipIssuerCertificateBit] = []
    with TapEnvironment("visa_qvsdc_plastic", config=load_config("offline_only")) as env:
        result, _ = env.tap(OFFLINE_AMOUNT, fault=_flip_issuer_certificate(faults))
    assert _oda_failed(result, "issuer certificate").dda_failed
    assert result.outcome.status == Status.DECLINED and not result.online


def test_mastercard_corrupted_issuer_certificate_fails_cda_and_ends_the_application() -> None:
    """Book C-2: the keys are recovered on the GENERATE AC answer; CDA failing there
    ends the application (the card's TC is not taken)."""
    faults: list[FlipIssuerCertificateBit] = []
    with TapEnvironment("mastercard_mchip_plastic", config=OFFLINE_CAPABLE) as env:
        result, _ = env.tap(OFFLINE_AMOUNT, fault=_flip_issuer_certificate(faults))
    assert [fault.flipped for fault in faults] == [1]
    assert _oda_failed(result, "issuer certificate").cda_failed
    assert result.outcome.status == Status.END_APPLICATION and not result.online


@pytest.mark.parametrize("profile", PLASTIC)
def test_a_ca_key_the_terminal_lacks_fails_offline_data_authentication(profile: str) -> None:
    """Both kernels go online: Kernel 3 because the CTQ asks when fDDA fails, Kernel 2
    because "CDA failed", set before GENERATE AC, is in the card's IAC - Online
    (FC50BCF800) and terminal action analysis asks for an ARQC (Book 3 §10.7)."""
    no_keys = replace(OFFLINE_CAPABLE, ca_keys=CaKeyStore())
    with TapEnvironment(profile, config=no_keys, trust_card_ca=False) as env:
        result, _ = env.tap(OFFLINE_AMOUNT)
        assert env.ca_key is not None
        rid, index = env.ca_key.rid.hex().upper(), env.ca_key.index
    tvr = _oda_failed(result, f"no CA public key {rid} index {index:02X}")
    assert tvr.cda_failed if profile.startswith("mastercard") else tvr.dda_failed
    assert result.entry.outcome.status == Status.ONLINE_REQUEST


def test_another_ca_key_under_the_same_index_fails_the_issuer_certificate() -> None:
    """The shipped scheme test key A000000003 92 is not the emulated issuer's CA key."""
    with TapEnvironment("visa_qvsdc_plastic", config=OFFLINE_CAPABLE, trust_card_ca=False) as env:
        assert env.ca_key is not None
        assert env.config.ca_keys.lookup(env.ca_key.rid, env.ca_key.index) != env.ca_key
        result, _ = env.tap(OFFLINE_AMOUNT)
    assert _oda_failed(result, "issuer certificate").dda_failed
