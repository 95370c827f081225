"""Fixtures for the card: a software issuer (keys made once per session), plastic and
HCE Visa cards, a wallet holding LUKs made from a test MK-AC, and a reader that
speaks APDUs to a card the way a terminal does (with ``emv.apdu``, ``emv.dol``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from emv import apdu, dol, tlv
from emv.apdu import ResponseApdu
from emv.bitfields import TTQ
from emv.crypto import cbp, kd, wrap
from emv.crypto.wrap import BatchHeader, BatchKey, BatchKind
from hce.card import (
    Card,
    CardProfile,
    Counters,
    FileCounterStore,
    HceKeys,
    SoftIssuer,
    load_profile,
    personalise,
)
from hce.wallet import Wallet, WalletFile

HCE_IMK = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
NOW = 60_000  # hours since 2020-01-01
TOKEN = b"token-01"
TTQ_ONLINE = TTQ(
    emv_mode_supported=True,
    online_pin_supported=True,
    signature_supported=True,
    oda_for_online_authorizations_supported=True,
    consumer_device_cvm_supported=True,
)
TERMINAL = {
    0x9F03: bytes(6),
    0x9F1A: bytes.fromhex("0840"),
    0x95: bytes(5),
    0x5F2A: bytes.fromhex("0840"),
    0x9A: bytes.fromhex("260315"),
    0x9C: b"\x00",
    0x9F37: bytes.fromhex("1A2B3C4D"),
}


class Reader:
    """A terminal's view of one card: APDUs in, parsed responses out."""

    def __init__(self, card: Card) -> None:
        self.card = card
        self.ats = card.power_on()

    def send(self, command: apdu.CommandApdu | bytes) -> ResponseApdu:
        raw = command if isinstance(command, bytes) else command.to_bytes()
        return ResponseApdu.parse(self.card.transceive(raw))

    def sw(self, command: apdu.CommandApdu | bytes) -> int:
        return self.send(command).sw

    def select(self, aid: bytes) -> list[tlv.Tlv]:
        answer = self.send(apdu.select(aid))
        assert answer.sw == 0x9000
        return tlv.decode(answer.data)

    def pdol_data(self, fci: list[tlv.Tlv], amount: int, ttq: TTQ) -> bytes:
        pdol = tlv.find(fci, 0x9F38)
        assert pdol is not None
        values = {**TERMINAL, 0x9F66: ttq.to_bytes(), 0x9F02: bytes.fromhex(f"{amount:012d}")}
        return dol.build_dol_data(dol.parse_dol(pdol.value), values)

    def tap(self, amount: int = 1500, ttq: TTQ = TTQ_ONLINE) -> dict[int, bytes]:
        """PPSE, SELECT, GPO: the GPO response's data objects by tag (asserting 9000)."""
        ppse = self.send(apdu.select_ppse())
        assert ppse.sw == 0x9000
        aid = tlv.find(tlv.decode(ppse.data), 0x4F)
        assert aid is not None
        fci = self.select(aid.value)
        answer = self.send(apdu.get_processing_options(self.pdol_data(fci, amount, ttq)))
        assert answer.sw == 0x9000, f"{answer.sw:04X}"
        template = tlv.decode(answer.data)
        assert [obj.tag for obj in template] == [0x77]
        return tlv.index(template)

    def read_records(self, afl: bytes) -> list[tuple[int, bytes, bool]]:
        """Every record the AFL names: (SFI, record, signed for ODA), asserting 9000."""
        records = []
        for i in range(0, len(afl), 4):
            sfi, first, last, signed = afl[i] >> 3, afl[i + 1], afl[i + 2], afl[i + 3]
            for number in range(first, last + 1):
                answer = self.send(apdu.read_record(sfi, number))
                assert answer.sw == 0x9000
                records.append((sfi, answer.data, number - first < signed))
        return records


@pytest.fixture(scope="session")
def issuer() -> SoftIssuer:
    return SoftIssuer()


@pytest.fixture(scope="session")
def plastic_profile() -> CardProfile:
    return load_profile("visa_qvsdc_plastic")


@pytest.fixture(scope="session")
def hce_profile() -> CardProfile:
    return load_profile("visa_qvsdc_hce")


@pytest.fixture
def counter_file(tmp_path: Path) -> Path:
    return tmp_path / "counters"


class CountingStore:
    """A counter store over the counter file that tells each load and save it passes on."""

    def __init__(self, store: FileCounterStore) -> None:
        self.store = store
        self.calls: list[str] = []

    def load(self) -> Counters:
        self.calls.append("load")
        return self.store.load()

    def save(self, counters: Counters) -> None:
        self.calls.append("save")
        self.store.save(counters)


@pytest.fixture
def counting_store(counter_file: Path) -> CountingStore:
    return CountingStore(FileCounterStore(counter_file))


@pytest.fixture
def make_plastic(
    issuer: SoftIssuer, plastic_profile: CardProfile, counter_file: Path
) -> Callable[..., Card]:
    """A plastic card (optionally with changed application fields) over the counter file."""

    def make(**changes: object) -> Card:
        app = dataclasses.replace(plastic_profile.applications[0], **changes)
        profile = dataclasses.replace(plastic_profile, applications=(app,))
        image = personalise(profile, issuer.signer(profile))
        return Card(image, issuer.plastic_keys(profile, FileCounterStore(counter_file)))

    return make


@pytest.fixture
def plastic(make_plastic: Callable[..., Card]) -> Reader:
    return Reader(make_plastic())


def luk_batch(sequence: int, max_transactions: int = 3) -> BatchKey:
    index = cbp.KeyIndex(NOW, sequence).to_bytes()
    luk = cbp.derive_luk(hce_mk(), index)
    return BatchKey(BatchKind.LUK, index, luk, max_transactions, 100_000, NOW + 24)


def hce_mk() -> bytes:
    return kd.derive_icc_mk_a(HCE_IMK, "4761739001010010", b"\x01")


@pytest.fixture
def wallet(tmp_path: Path) -> Wallet:
    """An enrolled wallet holding one LUK good for three taps (sealed as the server does)."""
    wallet = Wallet.register(
        WalletFile(tmp_path / "wallet.bin", tmp_path / "device.secret", "hw-id"), lambda: NOW
    )
    wallet.enrol("4761739001010010", TOKEN)
    fingerprint = wrap.device_fingerprint(wallet.device_point)
    header = BatchHeader(b"\x00" * 7 + b"\x01", TOKEN, fingerprint, BatchKind.LUK).to_bytes()
    envelope = wrap.wrap_batch(
        wallet.device_point,
        header,
        wrap.encode_batch([luk_batch(1)]),
        ephemeral_key=ec.generate_private_key(ec.SECP256R1()),
    )
    wallet.load_batch(header, envelope)
    return wallet


@pytest.fixture
def make_hce(issuer: SoftIssuer, hce_profile: CardProfile, wallet: Wallet) -> Callable[..., Card]:
    def make(*, cdcvm: bool = False) -> Card:
        image = personalise(hce_profile, issuer.signer(hce_profile))
        return Card(image, HceKeys(wallet, cdcvm=cdcvm))

    return make


@pytest.fixture
def connect() -> Callable[[Card], Reader]:
    """Power a card on in a fresh reader: ``connect(card)`` is a new tap."""
    return Reader


# --- Mastercard M/Chip ---------------------------------------------------------------------------

MC_HCE_PAN = "5204730000001003"  # mastercard_mchip_hce's token PAN
MOBILE_PIN = "2468"


@pytest.fixture(scope="session")
def mc_plastic_profile() -> CardProfile:
    return load_profile("mastercard_mchip_plastic")


@pytest.fixture(scope="session")
def mc_hce_profile() -> CardProfile:
    return load_profile("mastercard_mchip_hce")


@pytest.fixture
def make_mc(
    issuer: SoftIssuer, mc_plastic_profile: CardProfile, counter_file: Path
) -> Callable[..., Card]:
    """A plastic M/Chip card (optionally with changed application fields) over the counter file."""

    def make(**changes: object) -> Card:
        app = dataclasses.replace(mc_plastic_profile.applications[0], **changes)
        profile = dataclasses.replace(mc_plastic_profile, applications=(app,))
        image = personalise(profile, issuer.signer(profile))
        return Card(image, issuer.plastic_keys(profile, FileCounterStore(counter_file)))

    return make


@pytest.fixture
def mc(make_mc: Callable[..., Card]) -> Reader:
    return Reader(make_mc())


@pytest.fixture(scope="session")
def mc_hce_mk() -> bytes:
    """The MK-AC the server derives for the Mastercard token: its SUKs come from it."""
    return kd.derive_icc_mk_a(HCE_IMK, MC_HCE_PAN, b"\x00")


@pytest.fixture(scope="session")
def mobile_pin() -> str:
    return MOBILE_PIN


@pytest.fixture
def suk_wallet(tmp_path: Path, mc_hce_mk: bytes) -> Wallet:
    """An enrolled wallet holding the SUK and PIN-masked SUK-UV of ATCs 1 to 3."""
    wallet = Wallet.register(
        WalletFile(tmp_path / "wallet.bin", tmp_path / "device.secret", "hw-id"), lambda: NOW
    )
    wallet.enrol(MC_HCE_PAN, TOKEN)
    mask = cbp.pin_key(MOBILE_PIN, MC_HCE_PAN)
    keys = []
    for atc in (1, 2, 3):
        ident = atc.to_bytes(4, "big")
        suk = cbp.derive_suk(mc_hce_mk, ident[2:])
        masked = cbp.mask_key(cbp.derive_suk_uv(mc_hce_mk, ident[2:]), mask)
        keys.append(BatchKey(BatchKind.SUK, ident, suk, 1, 100_000, NOW + 24))
        keys.append(BatchKey(BatchKind.SUK_UV, ident, masked, 1, 100_000, NOW + 24))
    fingerprint = wrap.device_fingerprint(wallet.device_point)
    header = BatchHeader(b"\x00" * 7 + b"\x02", TOKEN, fingerprint, BatchKind.SUK).to_bytes()
    envelope = wrap.wrap_batch(
        wallet.device_point,
        header,
        wrap.encode_batch(keys),
        ephemeral_key=ec.generate_private_key(ec.SECP256R1()),
    )
    wallet.load_batch(header, envelope)
    return wallet


@pytest.fixture
def make_mc_hce(
    issuer: SoftIssuer, mc_hce_profile: CardProfile, suk_wallet: Wallet
) -> Callable[..., Card]:
    """An HCE M/Chip card over the SUK wallet; ``pin`` is what the user entered."""

    def make(*, cdcvm: bool = False, pin: str | None = None) -> Card:
        image = personalise(mc_hce_profile, issuer.signer(mc_hce_profile))
        return Card(image, HceKeys(suk_wallet, cdcvm=cdcvm, pin=pin))

    return make
