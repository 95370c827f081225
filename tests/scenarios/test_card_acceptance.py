"""Acceptance: cards from hce.card, provisioned by hce.server into hce.wallet, tapped
the way a terminal does it, and checked independently with emv.crypto.

* An HCE card provisioned by the token server makes ARQCs its authorisation
  approves with the right ARPC, and passes fDDA or CDA on the certificates the server
  signed for the key the phone made.
* A plastic card's cryptograms pass a classic issuer verification (Option A,
  session key), recomputed here and in an HSM holding the IMK.
* 100,000 random and mutated APDUs per profile: a status word every time, and a
  normal transaction afterwards.
* Power off after any command: the ATC on disk counts the cryptograms made, never
  reused, the wallet opens and its log verifies, and the next tap works.
* A plastic card whose issuer's IMK-AC the token server imported is approved online by
  its issuer host, with the ARPC of its cryptogram version.

Every test runs over every shipped profile (hce.card.shipped_profiles()).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from icc_data import icc_data as encode_icc_data

from emv import apdu, dol, tlv
from emv.apdu import CryptogramType, ResponseApdu
from emv.bitfields import AIP, TTQ
from emv.crypto import ac, cbp, des, kd, oda
from emv.link import Link
from hce.card import (
    Card,
    CardProfile,
    FileCounterStore,
    HceKeys,
    MemoryCounterStore,
    SoftIssuer,
    load_profile,
    personalise,
    shipped_profiles,
)
from hce.card.keys import CounterStore
from hce.hsm.interface import CommonSession, IccMaster, KeyKind, KeyPath, MastercardSession
from hce.hsm.soft import SoftHsm
from hce.server import Principal, ServerConfig, SqliteStore, TokenService
from hce.server.authorisation import CSU_APPROVED
from hce.server.service import CA_KEY, IMK_AC, KeyImport
from hce.wallet import Wallet, first_bad_entry
from scenarios.tap import Phone
from scenarios.tap import provision as provision_phone

NOW = datetime(2026, 3, 15, 12, 30, tzinfo=UTC)
MASTER_KEY = bytes(range(32))
SERVER_IMK = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
AMOUNT = 1500
TERMINAL = {
    0x9F03: bytes(6),
    0x9F1A: bytes.fromhex("0826"),
    0x95: bytes(5),
    0x5F2A: bytes.fromhex("0826"),
    0x9A: bytes.fromhex("260315"),
    0x9C: b"\x00",
    0x9F37: bytes.fromhex("5A1B3C4D"),
    0x9F35: b"\x22",
}
TTQ_ONLINE = TTQ(
    emv_mode_supported=True,
    online_pin_supported=True,
    signature_supported=True,
    oda_for_online_authorizations_supported=True,
    online_cryptogram_required=True,
)
FUZZ_APDUS = 100_000


def _profiles(key_mode: str | None = None) -> list[CardProfile]:
    profiles = [load_profile(path) for path in shipped_profiles()]
    return [p for p in profiles if key_mode in (None, p.key_mode)]


def _ids(profiles: list[CardProfile]) -> list[str]:
    return [profile.name for profile in profiles]


# --- the terminal ---------------------------------------------------------------------------


@dataclass
class Tap:
    """What a terminal learned from one transaction."""

    objects: dict[int, bytes] = field(default_factory=dict)  # GPO / GENERATE AC / records
    signed_records: bytes = b""  # the static data to authenticate, AIP excluded
    values: dict[int, bytes] = field(default_factory=dict)  # the terminal's own data
    pdol_data: bytes = b""
    cdol1_data: bytes = b""
    generate_ac: bytes = b""  # the GENERATE AC response data, if one was sent
    authenticated: str = ""  # the offline data authentication that passed: fdda, cda

    @property
    def pan(self) -> str:
        """The PAN as a terminal reads it: track 2 (57) up to the separator, else 5A."""
        if 0x57 in self.objects:
            return self.objects[0x57].hex().upper().split("D")[0]
        return self.objects[0x5A].hex().upper().rstrip("F")

    @property
    def data(self) -> ac.CryptogramData:
        """Book 2 Table 26 as the terminal sent it, with the card's AIP and ATC."""
        card = {0x82: self.objects[0x82], 0x9F36: self.objects[0x9F36]}
        return ac.CryptogramData.from_tags({**self.values, **card})

    def icc_data(self) -> bytes:
        """The ICC data (DE 55) an acquirer sends for online authorisation."""
        return encode_icc_data(
            self.pan,
            self.data,
            self.objects[0x9F26],
            self.objects[0x9F10],
            self.objects[0x5F34].hex(),
            cid=self.objects[0x9F27],
        )


class Terminal:
    """Speaks to a card the way a contactless kernel does, with emv.apdu and emv.dol:
    PPSE, SELECT, GPO, READ RECORD, and GENERATE AC when GPO gave no cryptogram. With
    the CA's key it asks for CDA when the card offers it and authenticates the card
    (fDDA or CDA: Book 2 §6, Book C-3 Annex C), taking a CDA cryptogram from its SDAD."""

    def __init__(self, card: Link, ca_key: oda.RsaPublicKey | None = None) -> None:
        self.card = card
        self.ca_key = ca_key
        self.commands: list[bytes] = []

    def send(self, command: apdu.CommandApdu) -> ResponseApdu:
        raw = command.to_bytes()
        self.commands.append(raw)
        answer = ResponseApdu.parse(self.card.transceive(raw))
        assert answer.sw == 0x9000, f"{apdu.command_name(command)}: {answer.sw:04X}"
        return answer

    def tap(self, amount: int = AMOUNT, ttq: TTQ = TTQ_ONLINE) -> Tap:
        self.card.power_on()
        tap = Tap(values={**TERMINAL, 0x9F66: ttq.to_bytes(), 0x9F02: _bcd_amount(amount)})
        ppse = tlv.index(tlv.decode(self.send(apdu.select_ppse()).data))
        fci = tlv.index(tlv.decode(self.send(apdu.select(ppse[0x4F])).data))
        tap.pdol_data = dol.build_dol_data(dol.parse_dol(fci.get(0x9F38, b"")), tap.values)
        gpo = self.send(apdu.get_processing_options(tap.pdol_data))
        tap.objects.update(_template(gpo.data))
        self._read_records(tap)
        if 0x9F26 not in tap.objects:
            tap.cdol1_data = dol.build_dol_data(dol.parse_dol(tap.objects[0x8C]), tap.values)
            cda = self.ca_key is not None and AIP.from_bytes(tap.objects[0x82]).cda_supported
            command = apdu.generate_ac(CryptogramType.ARQC, tap.cdol1_data, cda=cda)
            tap.generate_ac = self.send(command).data
            tap.objects.update(_template(tap.generate_ac, generate_ac=True))
        self.card.power_off()
        if self.ca_key is not None:
            self._authenticate(self.ca_key, tap)
        return tap

    def _read_records(self, tap: Tap) -> None:
        afl = tap.objects[0x94]
        for i in range(0, len(afl), 4):
            sfi, first, last, signed = afl[i] >> 3, afl[i + 1], afl[i + 2], afl[i + 3]
            for number in range(first, last + 1):
                record = self.send(apdu.read_record(sfi, number)).data
                template = tlv.decode(record)[0]
                tap.objects.update(tlv.index(template.children or ()))
                if number - first < signed:
                    tap.signed_records += template.value if sfi <= 10 else record

    @staticmethod
    def _authenticate(ca_key: oda.RsaPublicKey, tap: Tap) -> None:
        """The issuer key under the CA, the ICC key under the issuer key over the static
        data, then the card's signature: fDDA on GPO, or CDA on GENERATE AC."""
        objects, values = tap.objects, tap.values
        issuer = oda.recover_issuer_public_key(
            ca_key,
            oda.PublicKeyCertificate(objects[0x90], objects.get(0x92, b""), objects[0x9F32]),
            pan=tap.pan,
            today=NOW.date(),
        )
        icc = oda.recover_icc_public_key(
            issuer.public_key,
            oda.PublicKeyCertificate(objects[0x9F46], objects.get(0x9F48, b""), objects[0x9F47]),
            pan=tap.pan,
            static_data=tap.signed_records + objects[0x82],
            today=NOW.date(),
        ).public_key
        if 0x9F69 in objects:
            terminal = oda.fdda_terminal_data(
                values[0x9F37], values[0x9F02], values[0x5F2A], objects[0x9F69]
            )
            assert oda.verify_dda(icc, objects[0x9F4B], terminal) == objects[0x9F36]
            tap.authenticated = "fdda"
        elif 0x9F4B in objects:
            response = tlv.decode(tap.generate_ac)[0].children or ()
            recovered = oda.verify_cda(
                icc,
                objects[0x9F4B],
                unpredictable_number=values[0x9F37],
                cid=objects[0x9F27][0],
                pdol_data=tap.pdol_data,
                cdol1_data=tap.cdol1_data,
                response_tlvs=b"".join(o.to_bytes() for o in response if o.tag != 0x9F4B),
            )
            objects[0x9F26] = recovered.application_cryptogram
            tap.authenticated = "cda"


def _bcd_amount(amount: int) -> bytes:
    return bytes.fromhex(f"{amount:012d}")


def _template(data: bytes, *, generate_ac: bool = False) -> dict[int, bytes]:
    """A response's data objects: template 77, or format 1 (80: AIP || AFL for GPO;
    CID || ATC || AC || IAD for GENERATE AC)."""
    decoded = tlv.decode(data)[0]
    if decoded.tag == 0x77:
        return tlv.index(decoded.children or ())
    value = decoded.value
    if not generate_ac:
        return {0x82: value[:2], 0x94: value[2:]}
    return {0x9F27: value[:1], 0x9F36: value[1:3], 0x9F26: value[3:11], 0x9F10: value[11:]}


# --- a token server in this process ---------------------------------------------------------


@dataclass
class Server:
    service: TokenService
    hsm: SoftHsm
    admin: Principal
    acquirer: Principal

    @property
    def ca_key(self) -> oda.RsaPublicKey:
        """The server's test CA public key, as a terminal loads it."""
        public = self.hsm.rsa_public_key(CA_KEY)
        return oda.RsaPublicKey(int.from_bytes(public.modulus, "big"), public.exponent)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A token server with a soft HSM whose IMK-AC the test knows (imported), so it
    can recompute every key independently."""
    directory = tmp_path_factory.mktemp("token-server")
    hsm = SoftHsm.create(directory / "keys", MASTER_KEY)
    hsm.import_key(IMK_AC, KeyKind.DES2, SERVER_IMK, des.kcv(SERVER_IMK))
    store = SqliteStore(directory / "store.sqlite")
    service = TokenService(hsm, store, lambda: NOW, ServerConfig())
    summary = service.initialise()
    assert summary.admin_credential is not None and IMK_AC not in summary.created
    admin = service.authenticate(summary.admin_credential)
    acquirer = service.authenticate(service.create_credential("acquirer", "pos", actor=admin))
    yield Server(service, hsm, admin, acquirer)
    store.close()


def provision(server: Server, profile: CardProfile, home: Path, keys: int = 3) -> Phone:
    """The phone of scenarios.tap.provision, on this module's server and clock."""
    return provision_phone(
        server.service, server.admin, profile, home, keys=keys, clock=lambda: NOW
    )


def _mk_ac(phone: Phone) -> bytes:
    """The token's MK-AC, derived here from the IMK the test gave the server."""
    return kd.derive_icc_mk_a(SERVER_IMK, phone.token_pan, phone.psn)


def _log_verifies(phone: Phone, wallet: Wallet) -> bool:
    previous, entries, macs = wallet.pending_log()
    log_key = cbp.derive_log_key(_mk_ac(phone), wallet.fingerprint)
    return first_bad_entry(log_key, previous, entries, macs) is None


HCE = _profiles("hce")


# --- a. HCE: provisioned by the server, approved with the right ARPC ------------------------


def _expected_arpc(phone: Phone, tap: Tap, arc: bytes, csu: bytes | None) -> bytes:
    """The ARPC recomputed from the keys the test derives itself (docs/cbp.md)."""
    mk = _mk_ac(phone)
    iad = cbp.parse_iad(tap.objects[0x9F10])
    atc = tap.objects[0x9F36]
    if isinstance(iad, cbp.CbpVIad):
        luk = cbp.derive_luk(mk, iad.key_index.to_bytes())
        assert cbp.cbp_v_arqc(luk, tap.data, iad) == tap.objects[0x9F26]
        return ac.generate_arpc_1(cbp.cbp_v_session_key(luk, atc), tap.objects[0x9F26], arc)
    suk = cbp.derive_suk(mk, atc)
    assert csu is not None and cbp.cbp_m_arqc(suk, tap.data, iad) == tap.objects[0x9F26]
    return ac.generate_arpc_2(suk, tap.objects[0x9F26], csu)


@pytest.mark.parametrize("profile", HCE, ids=_ids(HCE))
def test_provisioned_hce_card_is_approved_with_a_correct_arpc(
    server: Server, profile: CardProfile, tmp_path: Path
) -> None:
    phone = provision(server, profile, tmp_path)
    tap = Terminal(phone.card, server.ca_key).tap()
    assert tap.objects[0x9F27] == bytes((CryptogramType.ARQC,))
    assert tap.pan == phone.token_pan
    assert tap.authenticated, "the card signs with the key the server certified"
    answer = server.service.authorise(tap.icc_data(), actor=server.acquirer)
    assert (answer.decision, answer.reason, answer.arc) == (
        "approved",
        "approved",
        bytes.fromhex("3030"),
    )
    assert answer.arpc == _expected_arpc(phone, tap, answer.arc, answer.csu)


# --- b. plastic: a classic issuer verification accepts the cryptograms ----------------------


def _issuer_session(
    version: str, mk: bytes, data: ac.CryptogramData, iad: bytes
) -> tuple[bytes, bytes, CommonSession | MastercardSession]:
    """Session key, MAC input and HSM session for a plastic card's cryptogram version
    (EMV Book 2 A1.3.1; Visa CVN 18/22; Mastercard CVN 16/17 (M/Chip session key)
    and 20/21 (common session key), CVR in IAD bytes 3-8, counters in bytes 11-18)."""
    atc, un = data.atc, data.unpredictable_number
    common = CommonSession(atc + bytes(6))
    if version in ("18", "22"):
        return kd.derive_common_sk(mk, common.r), ac.visa_cvn18_input(data, iad), common
    cvr, counters = iad[2:8], iad[10:18]
    mac_input = {
        "16": ac.mastercard_cvn16_input(data, cvr),
        "20": ac.mastercard_cvn16_input(data, cvr),
        "17": ac.mastercard_cvn17_input(data, cvr, counters),
        "21": ac.mastercard_cvn17_input(data, cvr, counters),
    }.get(version)
    if mac_input is None:
        pytest.fail(f"no issuer verification for cryptogram version {version}")
    if version in ("16", "17"):
        return kd.derive_mastercard_sk(mk, atc, un), mac_input, MastercardSession(atc, un)
    return kd.derive_common_sk(mk, common.r), mac_input, common


@dataclass
class PlasticCard:
    """A plastic card from a software issuer, and its issuer's verification."""

    profile: CardProfile
    issuer: SoftIssuer
    image_card: Callable[[CounterStore], Card]

    @property
    def mk_ac(self) -> bytes:
        imk = self.issuer.imk(self.profile.keys["imk_ac"])
        return kd.derive_icc_mk_a(imk, self.profile.pan, self.profile.psn)

    def verify(self, tap: Tap, hsm: SoftHsm | None = None) -> None:
        """Option A, the session key, the cryptogram: recomputed here, and by an HSM
        holding the IMK when one is given."""
        version = self.profile.applications[0].cryptogram_version
        iad = tap.objects[0x9F10]
        session_key, mac_input, session = _issuer_session(version, self.mk_ac, tap.data, iad)
        assert ac.generate_ac(session_key, mac_input) == tap.objects[0x9F26]
        if hsm is not None:
            icc = IccMaster(self.profile.pan, self.profile.psn)
            path = KeyPath("imk", icc, None, session)
            assert hsm.verify_application_cryptogram(path, mac_input, "emv", tap.objects[0x9F26])


def plastic_card(profile: CardProfile) -> PlasticCard:
    issuer = SoftIssuer()
    image = personalise(profile, issuer.signer(profile))
    return PlasticCard(
        profile, issuer, lambda store: Card(image, issuer.plastic_keys(profile, store))
    )


PLASTIC = _profiles("plastic")


@pytest.mark.parametrize("profile", PLASTIC, ids=_ids(PLASTIC))
def test_plastic_cryptograms_pass_a_classic_issuer_verification(
    profile: CardProfile, tmp_path: Path
) -> None:
    card = plastic_card(profile)
    hsm = SoftHsm.create(tmp_path / "keys", MASTER_KEY)
    imk = card.issuer.imk(profile.keys["imk_ac"])
    hsm.import_key("imk", KeyKind.DES2, imk, des.kcv(imk))
    terminal = Terminal(card.image_card(MemoryCounterStore()))
    atcs = []
    for amount in (100, 2_000, 99_999):
        tap = terminal.tap(amount)
        card.verify(tap, hsm)
        atcs.append(int.from_bytes(tap.objects[0x9F36], "big"))
    assert atcs == [1, 2, 3]


# --- c. fuzz ----------------------------------------------------------------------------------


ALL = _profiles()
_FUZZ_INS = (0xA4, 0xA8, 0xB2, 0xAE, 0xCA)


def _mutate(rng: random.Random, valid: list[bytes]) -> bytes:
    """A valid command with a few bytes flipped, cut, lengthened or its header redrawn;
    or plain random bytes."""
    choice = rng.random()
    if choice < 0.15:
        return rng.randbytes(rng.randrange(0, 270))
    command = bytearray(rng.choice(valid))
    if choice < 0.35:
        command[1] = rng.choice(_FUZZ_INS)
        command[2], command[3] = rng.randrange(256), rng.randrange(256)
    elif choice < 0.55:
        del command[rng.randrange(len(command)) :]
    elif choice < 0.7:
        command += rng.randbytes(rng.randrange(1, 8))
    for _ in range(rng.randrange(1, 4)):
        if command:
            command[rng.randrange(len(command))] = rng.randrange(256)
    return bytes(command)


def _fuzz_card(profile: CardProfile, home: Path, server: Server) -> tuple[Card, Callable[[], None]]:
    """The card to fuzz and how to check a normal transaction on it afterwards."""
    if profile.key_mode == "plastic":
        plastic = plastic_card(profile)
        card = plastic.image_card(MemoryCounterStore())
        return card, lambda: plastic.verify(Terminal(card).tap())
    phone = provision(server, profile, home, keys=1)

    def transaction() -> None:
        phone.replenish(1)
        answer = server.service.authorise(
            Terminal(phone.card).tap().icc_data(), actor=server.acquirer
        )
        assert answer.decision == "approved", answer

    return phone.card, transaction


@pytest.mark.parametrize("profile", ALL, ids=_ids(ALL))
def test_fuzzed_apdus_always_get_a_status_word(
    profile: CardProfile, server: Server, tmp_path: Path
) -> None:
    card, transaction = _fuzz_card(profile, tmp_path, server)
    recorder = Terminal(card)
    recorder.tap()
    valid = [*recorder.commands, apdu.get_data(0x9F36).to_bytes()]
    rng = random.Random(f"emvtap-fuzz-{profile.name}")
    card.power_on()
    step = 0
    for _ in range(FUZZ_APDUS):
        if rng.random() < 0.01:
            card.power_off()
            card.power_on()
        if rng.random() < 0.25:  # walk the valid script, so the mutations reach every state
            command, step = valid[step], (step + 1) % len(valid)
        else:
            command = _mutate(rng, valid)
        answer = card.transceive(command)
        assert len(answer) >= 2 and (0x61 <= answer[-2] <= 0x6F or answer[-2] == 0x90)
        assert answer[-2:] != b"\x6f\x00", f"internal failure on {command.hex()}"
    card.power_off()
    transaction()


# --- d. power off after any command -----------------------------------------------------------


def _cryptograms(commands: list[bytes], card: Card) -> int:
    """Send ``commands`` to a freshly powered card, power it off; the number of answers
    that carried an application cryptogram."""
    card.power_on()
    made = 0
    for command in commands:
        answer = ResponseApdu.parse(card.transceive(command))
        if answer.sw == 0x9000 and answer.data and 0x9F26 in _template_or_empty(answer.data):
            made += 1
    card.power_off()
    return made


def _template_or_empty(data: bytes) -> dict[int, bytes]:
    decoded = tlv.decode(data)[0]
    if decoded.tag == 0x77:
        return tlv.index(decoded.children or ())
    return {0x9F26: b""} if decoded.tag == 0x80 and len(decoded.value) >= 11 else {}


@pytest.mark.parametrize("profile", PLASTIC, ids=_ids(PLASTIC))
def test_plastic_power_off_after_any_command(profile: CardProfile, tmp_path: Path) -> None:
    plastic = plastic_card(profile)
    counters = tmp_path / "counters.bin"
    recorder = Terminal(plastic.image_card(FileCounterStore(counters)))
    recorder.tap()
    script = recorder.commands
    made = 1
    for k in range(len(script) + 1):
        made += _cryptograms(script[:k], plastic.image_card(FileCounterStore(counters)))
        assert FileCounterStore(counters).load().atc == made, f"after {k} commands"
    reopened = plastic.image_card(FileCounterStore(counters))
    tap = Terminal(reopened).tap()
    assert int.from_bytes(tap.objects[0x9F36], "big") == made + 1
    plastic.verify(tap)


@pytest.mark.parametrize("profile", HCE, ids=_ids(HCE))
def test_hce_power_off_after_any_command(
    profile: CardProfile, server: Server, tmp_path: Path
) -> None:
    phone = provision(server, profile, tmp_path, keys=4)
    recorder = Terminal(phone.card)
    recorder.tap()
    script = recorder.commands
    made = 1
    for k in range(len(script) + 1):
        wallet = phone.reopen()
        card = Card(phone.card.image, HceKeys(wallet))
        made += _cryptograms(script[:k], card)
        on_disk = phone.reopen()
        assert on_disk.atc == made, f"after {k} commands"
        assert _log_verifies(phone, on_disk)
    phone.wallet = phone.reopen()
    tap = Terminal(Card(phone.card.image, HceKeys(phone.wallet))).tap()
    assert int.from_bytes(tap.objects[0x9F36], "big") == made + 1
    answer = server.service.authorise(tap.icc_data(), actor=server.acquirer)
    assert answer.decision == "approved", answer


# --- e. plastic: approved online by the token server's issuer host --------------------------


def _issuer_host(directory: Path, imk: bytes) -> Server:
    """A token server whose IMK-AC is the card issuer's (imported, KCV checked)."""
    hsm = SoftHsm.create(directory / "keys", MASTER_KEY)
    store = SqliteStore(directory / "store.sqlite")
    service = TokenService(hsm, store, lambda: NOW, ServerConfig(ca_bits=1024, issuer_bits=1024))
    summary = service.initialise(imk_ac=KeyImport(imk, des.kcv(imk)))
    assert summary.admin_credential is not None and IMK_AC in summary.created
    admin = service.authenticate(summary.admin_credential)
    acquirer = service.authenticate(service.create_credential("acquirer", "pos", actor=admin))
    return Server(service, hsm, admin, acquirer)


@pytest.mark.parametrize("profile", PLASTIC, ids=_ids(PLASTIC))
def test_plastic_card_is_approved_online_by_the_issuer_host(
    profile: CardProfile, tmp_path: Path
) -> None:
    card = plastic_card(profile)
    host = _issuer_host(tmp_path, card.issuer.imk(profile.keys["imk_ac"]))
    version = profile.applications[0].cryptogram_version
    host.service.enrol_card(
        profile.pan,
        profile.expiry.hex()[:4],
        profile.psn.hex(),
        profile.brand,
        version,
        actor=host.admin,
    )
    tap = Terminal(card.image_card(MemoryCounterStore())).tap()
    assert tap.objects[0x9F27] == bytes((CryptogramType.ARQC,))
    answer = host.service.authorise(tap.icc_data(), actor=host.acquirer)
    assert (answer.decision, answer.reason, answer.arc) == ("approved", "approved", b"00")
    arqc = tap.objects[0x9F26]
    session_key, _, _ = _issuer_session(version, card.mk_ac, tap.data, tap.objects[0x9F10])
    if profile.brand == "visa":  # method 2 under the session key (pyemv VisaCVN18/22)
        assert answer.csu == CSU_APPROVED
        assert answer.arpc == ac.generate_arpc_2(session_key, arqc, CSU_APPROVED)
    else:  # method 1 under the ICC MK (CVN 16/17) or the session key (CVN 20/21)
        key = card.mk_ac if version in ("16", "17") else session_key
        assert answer.arpc == ac.generate_arpc_1(key, arqc, answer.arc)
    again = host.service.authorise(tap.icc_data(), actor=host.acquirer)
    assert (again.reason, again.arpc) == ("replay", None)
