"""One tap, wired end to end: a shipped card profile, its issuer or token server, a
terminal, and the host between them (the library behind ``emvtap tap``).

:class:`TapEnvironment` builds everything in a directory with the embedded defaults
of DESIGN.md: a soft HSM whose master key is made now, a SQLite store, an in-process
link. The directory is a temporary one by default, made under :func:`scratch_root`:
``EMVTAP_SCRATCH`` when set, else ``/dev/shm`` when that is a writable directory (a
throw-away environment gains nothing from fsyncs that reach a disk: its files are
removed when it closes, and the order of its writes, which is what keeps counters
and keys whole across a tear, is the same in RAM), else the system's temporary folder.

* **plastic** profiles: a :class:`hce.card.SoftIssuer` makes the card's keys now;
  its IMK-AC is imported (KCV checked) into the token server, which enrols the
  card as its issuer host (``TokenService.enrol_card``); the terminal trusts the
  issuer's CA key (:meth:`SoftIssuer.ca_public_key`: RID of the AID, index 8F).
* **HCE** profiles: the token server makes its IMK-AC (imported, so a test can
  recompute every key), enrols a token, registers the phone's device key, certifies
  the ICC key the phone made, and issues limited-use keys into a
  :class:`hce.wallet.Wallet` (:func:`provision`); the terminal trusts the server's
  CA key under the AID's RID with the index personalisation gave.

The host is the token server, reached in-process (:class:`ServiceHost`) or over
HTTPS on 127.0.0.1 through :class:`terminal.host.HttpHost`, against an
:class:`hce.server.http.ApiServer` with a throw-away TLS PKI
(:func:`hce.server.tls.make_test_pki`), stopped by :meth:`TapEnvironment.close`.

What a card needs from its token server goes through a :class:`BackOffice` (the
admin's side: tokens, devices, plastic cards, suspensions) and a :class:`Device`
(the phone's side: key batches, the log, personalisation): in this process
:class:`LocalBackOffice` over the :class:`hce.server.TokenService`; with ``remote``
(``emvtap run --server URL``, :mod:`scenarios.remote`) a token server that is
already running, reached only over HTTPS: nothing is made in the process but the
card, the phone and the terminal, a plastic card gets a fresh PAN of its BIN (a
server enrols a PAN once) and keys under the IMK-AC the server imported, and the
host is always :class:`terminal.host.HttpHost` with an acquirer credential.

Each :meth:`TapEnvironment.tap` records the exchanges (:class:`emv.trace.RecordingLink`,
with the real clock unless ``trace_clock`` is given) and returns the terminal's
:class:`terminal.pos.TransactionResult` with the :class:`emv.trace.Trace`. The
Unpredictable Number (9F37, Book 3 Annex A) comes from ``os.urandom`` unless a
random source is given.

For scenarios (docs/scenarios.md), :meth:`TapEnvironment.from_scenario` builds the
environment a :class:`scenarios.model.Scenario` describes: the card profile and the
terminal configuration with their ``overrides`` deep-merged into the YAML document
before it is checked (:func:`deep_merge`: mappings merge key by key, the
``applications`` and ``aids`` lists merge item by item by position, any other list
or value is replaced), the host mode, and the phone and token server state
(:class:`scenarios.model.ServerState`). A :class:`ScenarioClock` is the token
server's clock and the trace's, so a scenario can make time pass without sleeping:
a ``delay`` fault shows in the trace's timestamps, ``keys: expired`` moves the
server past its keys' expiry (:mod:`scenarios.faults`).
"""

from __future__ import annotations

import calendar
import copy
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from functools import cache, lru_cache
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Protocol

import yaml

from emv.crypto import des, oda
from emv.link import Link
from emv.trace import RecordingLink, Trace
from hce.card import (
    Card,
    CardProfile,
    FileCounterStore,
    HceKeys,
    HsmSigner,
    SoftIssuer,
    load_profile,
    personalise,
    shipped_profiles,
)
from hce.card.personalise import certify_icc_key, for_token, personalise_certified
from hce.card.profile import PROFILES_DIR, ProfileError, parse_profile, read_profile_text
from hce.hsm.interface import Hsm, HsmError
from hce.hsm.soft import SoftHsm
from hce.server import Principal, ServerConfig, SqliteStore, TokenRecord, TokenService
from hce.server.errors import Conflict, ServiceError
from hce.server.http import ApiServer, tls_context
from hce.server.personalisation import Personalisation
from hce.server.service import CA_KEY, ISSUER_KEY, KeyImport
from hce.server.tls import make_test_pki
from hce.wallet import KeyFamily, ServerError, TokenServer, Wallet, WalletFile
from scenarios.links import Attachment, LinkSpec, attach, parse_link
from scenarios.model import CardSpec, Scenario, ServerState, TerminalSpec
from scenarios.remote import (
    IMK_AC_ENV,
    RemoteBackOffice,
    RemoteError,
    RemoteServer,
    check_certified,
    fresh_pan,
)
from terminal.config import (
    ConfigError,
    TerminalConfig,
    default_config,
    load_config,
    parse_config,
    read_config_text,
    with_ca_keys,
)
from terminal.host import Host, HostResponse, HostUnavailable, HttpHost
from terminal.pos import Terminal, TransactionResult
from terminal.transaction import Transaction, TransactionType

__all__ = [
    "FUNDING_PANS",
    "MERGED_BY_POSITION",
    "PHONE_PIN",
    "BackOffice",
    "Device",
    "HostMode",
    "LocalBackOffice",
    "LocalDevice",
    "Phone",
    "ScenarioClock",
    "ServiceHost",
    "TapEnvironment",
    "deep_merge",
    "load_card",
    "load_terminal",
    "provision",
    "provision_with",
    "scratch_root",
]

SCRATCH_ENV = "EMVTAP_SCRATCH"
RAM_FOLDER = Path("/dev/shm")
HostMode = Literal["inprocess", "http", "none"]
FUNDING_PANS = {"visa": "4000123412341234", "mastercard": "5100123412341230"}
"""Funding PANs of the tokens an HCE environment enrols (Luhn-valid test numbers)."""
TOKEN_EXPIRY = "2912"  # YYMM
SCHEME_FAMILY: dict[str, Literal["LUK", "SUK"]] = {"visa": "LUK", "mastercard": "SUK"}
PHONE_KEYS = 5  # limited-use keys a phone is given at a time
PHONE_PIN = "1234"  # the mobile PIN of a phone that verifies its user (ServerState.cdcvm)
MERGED_BY_POSITION = frozenset({"applications", "aids"})
"""Lists that :func:`deep_merge` merges item by item (the others are replaced)."""
Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


# --- time a scenario can make pass -------------------------------------------------------------


class ScenarioClock:
    """The time of a scenario: the real time when it was made, plus the time elapsed
    since (a monotonic clock), plus whatever :meth:`advance` added. The token server
    reads it as :meth:`now`, the trace as :meth:`ns`; nothing sleeps.

    ``start_ns`` and ``monotonic_ns`` are injectable (tests pin both)."""

    def __init__(
        self,
        start_ns: int | None = None,
        monotonic_ns: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        self._start = time.time_ns() if start_ns is None else start_ns
        self._monotonic = monotonic_ns
        self._origin = monotonic_ns()
        self._offset = 0

    def __repr__(self) -> str:
        return f"ScenarioClock(advanced {self._offset / 1e9:g} s)"

    @property
    def advanced_ns(self) -> int:
        """How far :meth:`advance` has moved the clock, in nanoseconds."""
        return self._offset

    def ns(self) -> int:
        """Nanoseconds since the Unix epoch (the trace's clock)."""
        return self._start + (self._monotonic() - self._origin) + self._offset

    def now(self) -> datetime:
        """An aware UTC datetime (the token server's clock)."""
        seconds, nanoseconds = divmod(self.ns(), 1_000_000_000)
        moment = datetime.fromtimestamp(seconds, UTC)
        return moment.replace(microsecond=nanoseconds // 1000)

    def advance(self, seconds: float) -> None:
        """Make ``seconds`` pass at once (not negative: time does not go back)."""
        if seconds < 0:
            raise ValueError(f"a clock does not go back ({seconds} s)")
        self._offset += round(seconds * 1e9)


# --- profiles and configurations with overrides ------------------------------------------------


def deep_merge(
    base: Any, overrides: Any, *, by_position: frozenset[str] = MERGED_BY_POSITION
) -> Any:
    """``overrides`` merged into ``base`` (a YAML document; neither is changed).

    Mappings merge key by key, recursively; a list under a key of ``by_position``
    (``applications``, ``aids``) merges item by item (override item 0 into base
    item 0, ...; extra override items are appended, base items without an override
    stay); any other value, lists included, is replaced by the override."""
    if not (isinstance(base, Mapping) and isinstance(overrides, Mapping)):
        return copy.deepcopy(overrides)
    merged = copy.deepcopy(dict(base))
    for key, value in overrides.items():
        if key not in merged:
            merged[key] = copy.deepcopy(value)
        elif key in by_position and isinstance(merged[key], list) and isinstance(value, list):
            old = merged[key]
            items = [
                deep_merge(a, b, by_position=by_position) for a, b in zip(old, value, strict=False)
            ]
            merged[key] = items + old[len(value) :] + copy.deepcopy(value[len(old) :])
        else:
            merged[key] = deep_merge(merged[key], value, by_position=by_position)
    return merged


def _is_name(value: str) -> bool:
    """A bare name (``default``), as opposed to a file (``cards/my.yaml``)."""
    path = Path(value)
    return path.suffix == "" and path.name == value


def _locate(value: str, relative_to: Path | None) -> Path:
    """A file named in a scenario: relative to the scenario's folder when it is there."""
    path = Path(value)
    if not path.is_absolute() and relative_to is not None and (relative_to / path).exists():
        return relative_to / path
    return path


def _merged_text(text: str, overrides: Mapping[str, Any], file: str) -> str:
    """YAML ``text`` with ``overrides`` deep-merged into its document, as YAML again."""
    if not isinstance(overrides, Mapping):
        raise ValueError(f"{file}: overrides: expected a mapping")
    try:
        document = yaml.load(text, Loader=yaml.CSafeLoader)
    except yaml.YAMLError as err:
        raise ValueError(f"{file}: not valid YAML: {err}") from None
    merged = deep_merge(document, overrides)
    return yaml.dump(merged, Dumper=yaml.CSafeDumper, sort_keys=False, allow_unicode=True)


def load_card(spec: CardSpec, relative_to: Path | None = None) -> CardProfile:
    """The card profile ``spec`` names (a shipped profile name or a file, a relative file
    looked up in ``relative_to`` first) with its overrides deep-merged into the YAML
    document before it is checked (:func:`deep_merge`); errors are
    :class:`hce.card.ProfileError` naming the file and field."""
    if _is_name(spec.profile) and (PROFILES_DIR / f"{spec.profile}.yaml").exists():
        path = PROFILES_DIR / f"{spec.profile}.yaml"
    else:
        path = _locate(spec.profile, relative_to)
    text = read_profile_text(path)
    if spec.overrides:
        try:
            text = _merged_text(text, spec.overrides, str(path))
        except ValueError as err:
            raise ProfileError(str(path), "", str(err).removeprefix(f"{path}: ")) from None
    return _checked_profile(text, path)


@lru_cache(maxsize=64)
def _checked_profile(text: str, path: Path) -> CardProfile:
    """:func:`hce.card.profile.parse_profile`, once per text: a run loads the same few
    profiles for scenario after scenario, and a profile is immutable."""
    return parse_profile(text, path)


def load_terminal(spec: TerminalSpec, relative_to: Path | None = None) -> TerminalConfig:
    """The terminal configuration ``spec`` names (a shipped name or a file, a relative
    file looked up in ``relative_to`` first), with its overrides deep-merged into the
    YAML document before it is checked (``aids`` merge by position); errors are
    :class:`terminal.config.ConfigError` naming the file and field."""
    base: Traversable
    if _is_name(spec.config):
        shipped = resources.files("terminal").joinpath("configs")
        resource = shipped.joinpath(f"{spec.config}.yaml")
        if not resource.is_file():
            load_config(spec.config)  # raises the ConfigError that lists the shipped ones
        file, base, read = f"configs/{spec.config}.yaml", shipped, resource.read_bytes
    else:
        path = _locate(spec.config, relative_to)
        file, base, read = str(path), path.parent, path.read_bytes
    text = read_config_text(file, read)
    if spec.overrides:
        try:
            text = _merged_text(text, spec.overrides, file)
        except ValueError as err:
            raise ConfigError(file, "", str(err).removeprefix(f"{file}: ")) from None
    return _checked_config(text, file, str(base))


@lru_cache(maxsize=64)
def _checked_config(text: str, file: str, base: str) -> TerminalConfig:
    """:func:`terminal.config.parse_config`, once per text, file and folder (as
    :func:`_checked_profile`; a configuration is immutable too). ``base`` is the
    folder's path: emvtap's shipped configurations are files, not zip members."""
    return parse_config(text, file, Path(base))


def _shipped(profile: CardProfile) -> bool:
    """Whether ``profile`` is exactly the shipped profile of its name (no overrides)."""
    names = {path.stem for path in shipped_profiles()}
    return profile.name in names and load_card(CardSpec(profile.name)) == profile


# --- the host, in process ----------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceHost:
    """:class:`terminal.host.Host` over a :class:`TokenService` in this process, calling
    ``authorise`` as ``acquirer`` (the same decision as ``POST /v1/authorisations``)."""

    service: TokenService
    acquirer: Principal

    def authorise(self, icc_data: bytes) -> HostResponse:
        try:
            answer = self.service.authorise(icc_data, actor=self.acquirer)
        except (ServiceError, HsmError) as err:
            raise HostUnavailable(f"token server: {err}") from None
        return HostResponse(
            approved=answer.decision == "approved",
            reason=answer.reason,
            arc=answer.arc,
            arpc=answer.arpc,
            csu=answer.csu,
            authorisation_id=answer.authorisation_id,
        )


# --- what a card needs from its token server ----------------------------------------------------


class Device(TokenServer, Protocol):
    """A registered phone's view of its token server: key batches and the log (the
    wallet's :class:`hce.wallet.TokenServer`), and personalisation."""

    @property
    def device_id(self) -> str: ...

    def personalise(self, profile: CardProfile, icc_key: oda.RsaPublicKey) -> Personalisation:
        """The certificates of the ICC key the phone made for its token's card of
        ``profile`` (PSN, expiry, CA index and, when told, the CA's public key)."""
        ...


class BackOffice(Protocol):
    """A token server as an environment's admin uses it (module docstring)."""

    def enrol_token(self, funding_pan: str, expiry: str, psn: str, scheme: str) -> TokenRecord:
        """A new token for ``funding_pan`` (expiry YYMM)."""
        ...

    def register_device(self, token_id: str, public_key: bytes) -> Device:
        """Register a phone's P-256 device key for the token; the phone's view."""
        ...

    def enrol_card(
        self, pan: str, expiry: str, psn: str, scheme: str, cryptogram_version: str
    ) -> str:
        """Enrol a plastic card with the issuer host; its card id."""
        ...

    def suspend_token(self, token_id: str) -> None: ...

    def suspend_card(self, card_id: str) -> None: ...


def _card_expiry(expiry: str) -> bytes:
    """A token's expiry YYMM as the card's 5F24: the month's last day (YYMMDD)."""
    year, month = 2000 + int(expiry[:2]), int(expiry[2:])
    return bytes.fromhex(f"{expiry}{calendar.monthrange(year, month)[1]:02d}")


@dataclass(frozen=True)
class LocalDevice:
    """:class:`Device` over a :class:`TokenService` in this process, as the device.

    With ``issuer`` the ICC key is certified with that signer instead of asking the
    server to personalise its shipped profile of that name (for a profile with
    overrides, which the server does not know; the signer is the server's issuer key
    in its HSM), for ``token``."""

    service: TokenService
    device_id: str
    principal: Principal
    issuer: HsmSigner | None = None
    token: TokenRecord | None = None

    def fetch_batch(self, kind: KeyFamily, count: int, pin: str | None) -> tuple[bytes, bytes]:
        batch = self.service.issue_batch(self.device_id, kind, count, pin, actor=self.principal)
        return batch.header.to_bytes(), batch.envelope

    def upload_log(
        self, previous: bytes, entries: Sequence[bytes], macs: Sequence[bytes]
    ) -> dict[str, Any]:
        report = self.service.reconcile(
            self.device_id, list(entries), list(macs), previous, actor=self.principal
        )
        return report.as_dict()

    def personalise(self, profile: CardProfile, icc_key: oda.RsaPublicKey) -> Personalisation:
        if self.issuer is None:
            return self.service.personalise_device(
                self.device_id, profile.name, icc_key, actor=self.principal
            )
        token = self.token
        if token is None:
            raise RuntimeError(f"device {self.device_id}: certifying needs its token")
        psn, expiry = bytes.fromhex(token.psn), _card_expiry(token.expiry)
        config = self.service.config
        card_profile = for_token(
            profile, pan=token.token_pan, psn=psn, expiry=expiry, ca_index=config.ca_index
        )
        certificates = certify_icc_key(card_profile, self.issuer, icc_key)
        return Personalisation(
            token.token_id, profile.name, psn, expiry, config.ca_rid, config.ca_index, certificates
        )


@dataclass
class LocalBackOffice:
    """:class:`BackOffice` over a :class:`TokenService` in this process, as ``admin``;
    ``issuer``: see :class:`LocalDevice`."""

    service: TokenService
    admin: Principal
    issuer: HsmSigner | None = None
    _tokens: dict[str, TokenRecord] = field(default_factory=dict, repr=False)

    def enrol_token(self, funding_pan: str, expiry: str, psn: str, scheme: str) -> TokenRecord:
        token = self.service.enrol_token(funding_pan, expiry, psn, scheme, actor=self.admin)
        self._tokens[token.token_id] = token
        return token

    def register_device(self, token_id: str, public_key: bytes) -> LocalDevice:
        registered = self.service.register_device(token_id, public_key, actor=self.admin)
        principal = self.service.authenticate(registered.credential)
        return LocalDevice(
            self.service, registered.device_id, principal, self.issuer, self._tokens.get(token_id)
        )

    def enrol_card(
        self, pan: str, expiry: str, psn: str, scheme: str, cryptogram_version: str
    ) -> str:
        record = self.service.enrol_card(
            pan, expiry, psn, scheme, cryptogram_version, actor=self.admin
        )
        return record.card_id

    def suspend_token(self, token_id: str) -> None:
        self.service.suspend(token_id, actor=self.admin)

    def suspend_card(self, card_id: str) -> None:
        self.service.suspend_card(card_id, actor=self.admin)


# --- a phone provisioned by the token server ---------------------------------------------------


@dataclass
class Phone:
    """A wallet provisioned by the token server, and the card the phone emulates with it.

    ``server`` is the phone's view of its token server (batches come from it);
    ``pin`` is the mobile PIN of a phone that verified its user (CDCVM): its single-use
    key batches carry the user-verified keys masked by it (docs/cbp.md); ``ca_key``
    the CA public key the personalisation answer told (None when it did not)."""

    server: TokenServer
    profile: CardProfile  # the HCE profile (shipped, or with a scenario's overrides)
    file: WalletFile
    wallet: Wallet
    device_id: str
    token_id: str
    token_pan: str
    psn: bytes
    card: Card
    clock: Clock = field(default=_utc_now, repr=False)
    pin: str | None = field(default=None, repr=False)
    ca_key: oda.RsaPublicKey | None = field(default=None, repr=False)

    @property
    def family(self) -> Literal["LUK", "SUK"]:
        return SCHEME_FAMILY[self.profile.brand]

    def reopen(self) -> Wallet:
        """The wallet as it is on disk."""
        return Wallet.open(self.file, self.clock)

    def replenish(self, count: int) -> None:
        """A batch of ``count`` keys from the server, loaded into the wallet."""
        pin = self.pin if self.family == "SUK" else None
        header, envelope = self.server.fetch_batch(self.family, count, pin)
        self.wallet.load_batch(header, envelope)


def provision(
    service: TokenService,
    admin: Principal,
    profile: CardProfile,
    home: Path,
    *,
    keys: int = 3,
    funding_pan: str | None = None,
    clock: Clock = _utc_now,
    cdcvm: bool = False,
    issuer: HsmSigner | None = None,
    rsa_keys: oda.RsaKeySource = oda.generate_rsa_key,
) -> Phone:
    """:func:`provision_with` the token server ``service`` in this process, as ``admin``.

    ``issuer``: certify the ICC key with this signer instead of asking the server to
    personalise its shipped profile of that name (for a profile with overrides, which
    the server does not know; the signer is the server's issuer key in its HSM)."""
    return provision_with(
        LocalBackOffice(service, admin, issuer),
        profile,
        home,
        keys=keys,
        funding_pan=funding_pan,
        clock=clock,
        cdcvm=cdcvm,
        rsa_keys=rsa_keys,
    )


def provision_with(
    office: BackOffice,
    profile: CardProfile,
    home: Path,
    *,
    keys: int = 3,
    funding_pan: str | None = None,
    clock: Clock = _utc_now,
    cdcvm: bool = False,
    rsa_keys: oda.RsaKeySource = oda.generate_rsa_key,
) -> Phone:
    """Enrol a token for ``profile``'s brand, register the phone's device, personalise the
    card (the phone makes its ICC key, the server certifies the public half through its
    HSM) and load ``keys`` limited-use keys (none when 0), all through ``office``.

    ``cdcvm``: the phone verified its user (Consumer Device CVM) with :data:`PHONE_PIN`,
    so the card reports it and a mastercard-like wallet gets user-verified keys;
    ``rsa_keys`` makes the phone's ICC key (:mod:`scenarios.keypool`)."""
    token = office.enrol_token(
        funding_pan or FUNDING_PANS[profile.brand], TOKEN_EXPIRY, "01", profile.brand
    )
    home.mkdir(parents=True, exist_ok=True)
    file = WalletFile(home / "wallet", home / "device.secret", "phone-1")
    wallet = Wallet.register(file, clock)
    device = office.register_device(token.token_id, wallet.device_point)
    wallet.enrol(token.token_pan, bytes.fromhex(token.token_id))
    spec = next(app.oda for app in profile.applications if app.oda.enabled)
    icc_key = rsa_keys(spec.icc_key_bits, spec.icc_exponent)
    answer = device.personalise(profile, icc_key.public_key)
    card_profile = for_token(
        profile, pan=token.token_pan, psn=answer.psn, expiry=answer.expiry, ca_index=answer.ca_index
    )
    image = personalise_certified(card_profile, icc_key, answer.certificates)
    pin = PHONE_PIN if cdcvm else None
    phone = Phone(
        device,
        profile,
        file,
        wallet,
        device.device_id,
        token.token_id,
        token.token_pan,
        answer.psn,
        Card(image, HceKeys(wallet, cdcvm=cdcvm, pin=pin)),
        clock,
        pin,
        answer.ca_key,
    )
    if keys:
        phone.replenish(keys)
    return phone


# --- the environment ---------------------------------------------------------------------------


def _tokens_for(config: ServerConfig, profile: CardProfile) -> ServerConfig:
    """``config`` with the token BIN of ``profile``'s scheme only, for an HCE card; with
    none for a plastic card, whose server is its issuer host and issues no token."""
    scheme = None if profile.key_mode == "plastic" else profile.brand
    bins = {name: prefix for name, prefix in config.token_bins.items() if name == scheme}
    return replace(config, token_bins=bins)


def _new_store(path: Path) -> SqliteStore:
    """A new, empty token server store at ``path``: a copy of :func:`_empty_store`, which
    the store opens as already of its schema version (creating the schema's tables and
    indexes costs more than a millisecond, copying their file a few microseconds)."""
    path.write_bytes(_empty_store())
    return SqliteStore(path)


@cache
def _empty_store() -> bytes:
    """The file of an empty token server store, made once per process."""
    with tempfile.TemporaryDirectory(prefix="emvtap-store-", dir=scratch_root()) as folder:
        path = Path(folder) / "store.sqlite"
        SqliteStore(path).close()  # the last connection checkpoints its log into the file
        return path.read_bytes()


def scratch_root() -> Path:
    """Where a throw-away environment's directory goes (module docstring)."""
    chosen = os.environ.get(SCRATCH_ENV)
    if chosen:
        return Path(chosen)
    if RAM_FOLDER.is_dir() and os.access(RAM_FOLDER, os.W_OK | os.X_OK):
        return RAM_FOLDER
    return Path(tempfile.gettempdir())


class _HttpsServer:
    """An :class:`ApiServer` over TLS on 127.0.0.1, served by a thread until stopped."""

    def __init__(self, service: TokenService, directory: Path) -> None:
        self.tls = make_test_pki(directory)
        context = tls_context(self.tls.certificate, self.tls.key)
        self.api = ApiServer(service, "127.0.0.1", 0, context)
        self._thread = threading.Thread(
            target=self.api.serve_forever, args=(0.05,), name="emvtap-tap-host", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self.api.shutdown()
        self.api.server_close()
        self._thread.join()


class TapEnvironment:
    """A card of one profile, its issuer or token server, a terminal and a host
    (module docstring). Use it as a context manager, or call :meth:`close`.

    ``config`` is the terminal configuration (the shipped default when None); the card's CA
    key (:attr:`ca_key`) is added to its CA keys, replacing a configured key of the same RID
    and index, unless ``trust_card_ca`` is False (a terminal that lacks the key, or holds
    another one under its index). ``random`` gives the Unpredictable Numbers, ``clock`` the
    terminal's local date and time, ``server_config`` the token server's key limits (None:
    the defaults, with the token BIN of an HCE card's scheme only, so that the server
    certifies one issuer key, not one per scheme; none for a plastic card, so that it
    certifies none), ``scenario_clock`` the token server's time and the trace's (real time
    unless given), ``server`` the phone and token server state of an HCE card
    (:class:`scenarios.model.ServerState`; None: :data:`PHONE_KEYS` keys, no CDCVM, an
    active token, replenished when empty). For a plastic card only ``server.token`` counts
    (a suspended card is declined by its issuer host); ``cdcvm`` is refused. ``hsm`` opens
    the token server's HSM when the environment is built and is closed by :meth:`close`
    (e.g. :meth:`scenarios.hsm_spec.Pkcs11Spec.environment_hsm`: a PKCS#11 token under a
    label prefix of the environment's own, its keys destroyed on close); None: a soft HSM
    with a master key made now, in the directory.

    ``remote``: use that running token server over HTTPS instead of making one
    (:mod:`scenarios.remote`); there is then no :attr:`service` or :attr:`hsm`, the
    host is :class:`terminal.host.HttpHost` whatever ``host`` says but "none", a
    plastic card needs :attr:`RemoteServer.imk_ac <scenarios.remote.RemoteServer>`,
    an HCE card must be a shipped profile whose certified data its overrides leave
    alone, and ``server_config`` and ``hsm`` are refused (the server has its own).

    ``link``: how the terminal reaches the card, a :class:`scenarios.links.LinkSpec`
    or its ``--link`` text: "inprocess" (default) hands the card object to the
    terminal; the others put a real link between them (:mod:`scenarios.links`: a vpcd
    socket, pcscd, nfcpy's udp RF link). Faults and the recorder wrap the terminal's
    side, so a trace is what the terminal saw (its FIELD_ON shows the ATR or ATS the
    reader gave). :meth:`close` takes the card off the link.

    ``rsa_keys``: where every RSA key of the environment comes from (the HSM's, the
    plastic issuer's, the ICC's): fresh keys by default; the runner passes its key
    pool's :meth:`~scenarios.keypool.RsaKeyPool.source`.

    :attr:`last` is the last tap's :class:`terminal.pos.TransactionResult` and
    :attr:`taps` counts the taps (nothing grows with them: a soak test of many
    thousand taps runs in constant memory)."""

    def __init__(
        self,
        profile: str | Path | CardProfile,
        *,
        config: TerminalConfig | None = None,
        host: HostMode = "inprocess",
        directory: Path | None = None,
        trust_card_ca: bool = True,
        random: Callable[[int], bytes] = os.urandom,
        clock: Callable[[], datetime] = datetime.now,
        server_config: ServerConfig | None = None,
        scenario_clock: ScenarioClock | None = None,
        server: ServerState | None = None,
        hsm: Callable[[], AbstractContextManager[Hsm]] | None = None,
        remote: RemoteServer | None = None,
        link: LinkSpec | str = "inprocess",
        rsa_keys: oda.RsaKeySource = oda.generate_rsa_key,
    ) -> None:
        self._rsa_keys = rsa_keys
        self.link_spec = parse_link(link) if isinstance(link, str) else link
        self._attachment: Attachment | None = None
        self.profile = profile if isinstance(profile, CardProfile) else load_profile(profile)
        self.remote = remote
        self.imk_ac: bytes | None = None  # the IMK-AC of the card's keys, when known here
        self._hsm_source = hsm
        self._hsm_stack = ExitStack()  # the HSM of ``hsm``, closed by close()
        self._owned = directory is None
        self.directory = (
            Path(tempfile.mkdtemp(prefix="emvtap-tap-", dir=scratch_root()))
            if directory is None
            else directory
        )
        self._random = random
        self._clock = clock
        self.scenario_clock = scenario_clock or ScenarioClock()
        self.server_state = server or ServerState(keys=PHONE_KEYS)
        self._server: _HttpsServer | None = None
        self._store: SqliteStore | None = None
        self.issuer: SoftIssuer | None = None
        self.phone: Phone | None = None
        self.card_id: str | None = None  # a plastic card's id at its issuer host
        self.trace = Trace()
        self.last: TransactionResult | None = None
        self.taps = 0
        self.host: Host | None = None
        try:
            self._build(config, host, trust_card_ca, server_config)
        except BaseException:
            self.close()
            raise

    @classmethod
    def from_scenario(
        cls,
        scenario: Scenario,
        *,
        directory: Path | None = None,
        random: Callable[[int], bytes] = os.urandom,
        clock: Callable[[], datetime] = datetime.now,
        scenario_clock: ScenarioClock | None = None,
        hsm: Callable[[], AbstractContextManager[Hsm]] | None = None,
        remote: RemoteServer | None = None,
        link: LinkSpec | str = "inprocess",
        rsa_keys: oda.RsaKeySource = oda.generate_rsa_key,
    ) -> TapEnvironment:
        """The environment ``scenario`` describes: its card (:func:`load_card`), terminal
        (:func:`load_terminal`), host and server state. Relative card and terminal
        files are looked up next to the scenario's file first; ``hsm``, ``remote``,
        ``link`` and ``rsa_keys`` as for the constructor."""
        folder = Path(scenario.source.file).parent if scenario.source.file else None
        profile = load_card(scenario.card, folder)
        config = load_terminal(scenario.terminal, folder)
        return cls(
            profile,
            config=config,
            host=scenario.host,
            directory=directory,
            random=random,
            clock=clock,
            scenario_clock=scenario_clock,
            server=scenario.server,
            hsm=hsm,
            remote=remote,
            link=link,
            rsa_keys=rsa_keys,
        )

    def _build(
        self,
        config: TerminalConfig | None,
        host: HostMode,
        trust_card_ca: bool,
        server_config: ServerConfig | None,
    ) -> None:
        state = self.server_state
        if state.keys < 0:
            raise ValueError(f"server.keys: {state.keys} keys: expected 0 or more")
        if self.profile.key_mode == "plastic" and state.cdcvm:
            raise ValueError(
                f"server.cdcvm: profile {self.profile.name} is a plastic card (no phone "
                "to verify its user)"
            )
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.remote is not None:
            if server_config is not None or self._hsm_source is not None:
                raise ValueError(
                    "a remote token server has its own configuration and HSM "
                    "(server_config, hsm: not with remote)"
                )
            self._wire(config, host, trust_card_ca, self._remote_card(self.remote))
            return
        self.hsm: Hsm
        if self._hsm_source is None:
            self.hsm = SoftHsm.create(
                self.directory / "hsm.keys", os.urandom(32), rsa_keys=self._rsa_keys
            )
        else:
            self.hsm = self._hsm_stack.enter_context(self._hsm_source())
        self._store = _new_store(self.directory / "store.sqlite")
        self.service = TokenService(
            self.hsm,
            self._store,
            self.scenario_clock.now,
            server_config or _tokens_for(ServerConfig(), self.profile),
        )
        issuer = SoftIssuer(rsa_keys=self._rsa_keys) if self.profile.key_mode == "plastic" else None
        if issuer is not None:
            self.imk_ac = issuer.imk(self.profile.keys["imk_ac"])
        else:
            self.imk_ac = des.adjust_parity(os.urandom(16))
        summary = self.service.initialise(imk_ac=KeyImport(self.imk_ac, des.kcv(self.imk_ac)))
        if summary.admin_credential is None:  # a fresh store always makes one
            raise RuntimeError(f"{self.directory}: the token server store is not new")
        self._issuer_certificates = summary.issuer_certificates
        self.admin = self.service.authenticate(summary.admin_credential)
        self.acquirer_credential = self.service.create_credential(
            "acquirer", "emvtap-tap", actor=self.admin
        )
        self.acquirer = self.service.authenticate(self.acquirer_credential)
        self.office: BackOffice = LocalBackOffice(self.service, self.admin)
        ca_key: oda.CaPublicKey | None
        if issuer is not None:
            self.issuer = issuer
            self.emulated, ca_key = self._plastic_card(issuer)
        else:
            self.emulated, ca_key = self._hce_card()
        self._wire(config, host, trust_card_ca, ca_key)

    def _wire(
        self,
        config: TerminalConfig | None,
        host: HostMode,
        trust_card_ca: bool,
        ca_key: oda.CaPublicKey | None,
    ) -> None:
        """The terminal, trusting ``ca_key``, and its host."""
        self.ca_key = ca_key  # the card's CA public key, None when it does no ODA
        base = config if config is not None else default_config()
        trusted = [ca_key] if trust_card_ca and ca_key is not None else []
        self.config = with_ca_keys(base, trusted)
        self.host = self._host(host)
        self.terminal = Terminal(self.config, self.host)
        self._attachment = attach(self.link_spec, self.emulated)
        self.card: Link = RecordingLink(self._link(), self.trace, self.scenario_clock.ns)

    def _link(self) -> Link:
        """What the terminal transceives with: its side of the link to the card."""
        if self._attachment is None:
            raise RuntimeError("the environment has no card on a link (closed?)")
        return self._attachment.link

    def _plastic_card(self, issuer: SoftIssuer) -> tuple[Card, oda.CaPublicKey | None]:
        """The card under ``issuer``'s keys, enrolled with the issuer host; its CA key
        (None for a card without offline data authentication)."""
        profile = self.profile
        self.card_id = self.office.enrol_card(
            profile.pan,
            profile.expiry.hex()[:4],
            profile.psn.hex(),
            profile.brand,
            profile.applications[0].cryptogram_version,
        )
        if self.server_state.token == "suspended":
            self.office.suspend_card(self.card_id)
        image = personalise(profile, issuer.signer(profile), self._rsa_keys)
        counters = FileCounterStore(self.directory / "counters.bin")
        oda_done = any(app.oda.enabled for app in profile.applications)
        ca_key = issuer.ca_public_key(profile) if oda_done else None
        return Card(image, issuer.plastic_keys(profile, counters)), ca_key

    def _hce_card(self) -> tuple[Card, oda.CaPublicKey]:
        """The phone's card, provisioned; the server's CA key under the AID's RID and
        the index personalisation gave (8F). A profile the server does not ship (or one
        with overrides) is certified with the server's issuer key directly."""
        signer = None if _shipped(self.profile) else self._issuer_signer()
        office = (
            self.office if signer is None else LocalBackOffice(self.service, self.admin, signer)
        )
        phone = self._provision(office)
        return phone.card, self._card_ca(phone, self.hsm.rsa_public_key(CA_KEY).oda_key())

    def _provision(self, office: BackOffice) -> Phone:
        """The phone, provisioned through ``office`` as the server state says."""
        state = self.server_state
        self.phone = provision_with(
            office,
            self.profile,
            self.directory / "phone",
            keys=state.keys,
            cdcvm=state.cdcvm,
            rsa_keys=self._rsa_keys,
        )
        if state.token == "suspended":
            office.suspend_token(self.phone.token_id)
        return self.phone

    @staticmethod
    def _card_ca(phone: Phone, server_ca: oda.RsaPublicKey) -> oda.CaPublicKey:
        """The server's CA key as the terminal looks it up for the phone's card: under
        the AID's RID and the index personalisation gave (8F)."""
        app = next(app for app in phone.card.image.profile.applications if app.oda.enabled)
        return oda.CaPublicKey(app.aid[:5], app.oda.ca_index, server_ca)

    def _remote_card(self, remote: RemoteServer) -> oda.CaPublicKey | None:
        """The card, set up on the remote token server (class docstring); its CA key."""
        office = RemoteBackOffice(remote)
        self.office = office
        self.acquirer_credential = remote.acquirer_credential or office.create_credential(
            "acquirer", "emvtap-tap"
        )
        ca_key: oda.CaPublicKey | None
        if self.profile.key_mode == "plastic":
            if remote.imk_ac is None:
                raise RemoteError(
                    f"profile {self.profile.name} is a plastic card: with --server its keys "
                    f"come from the IMK-AC the token server imported, in {IMK_AC_ENV} "
                    "(32 hex digits)"
                )
            self.imk_ac = remote.imk_ac
            self.profile = replace(self.profile, pan=fresh_pan(self.profile.pan))
            self.issuer = SoftIssuer({self.profile.keys["imk_ac"]: remote.imk_ac}, self._rsa_keys)
            self.emulated, ca_key = self._plastic_card(self.issuer)
            return ca_key
        if self.profile.name not in {path.stem for path in shipped_profiles()}:
            raise RemoteError(
                f"profile {self.profile.name}: a token server certifies only the HCE "
                "profiles it ships; this card needs the embedded server (no --server)"
            )
        phone = self._provision(office)
        if phone.ca_key is None:
            raise RemoteError(
                f"{remote.where}: its personalisation answer has no ca_public_key "
                "(a server older than this emvtap?)"
            )
        check_certified(phone.card.image, phone.ca_key, date.today())
        self.emulated = phone.card
        return self._card_ca(phone, phone.ca_key)

    def _issuer_signer(self) -> HsmSigner:
        """The token server's issuer key for the profile's brand, in its HSM."""
        row = next((r for r in self._issuer_certificates if r.scheme == self.profile.brand), None)
        if row is None:
            raise RuntimeError(
                f"the token server has no issuer certificate for {self.profile.brand}"
            )
        certificate = oda.PublicKeyCertificate(row.certificate, row.remainder, row.exponent)
        return HsmSigner(self.hsm, ISSUER_KEY, certificate)

    def _host(self, mode: HostMode) -> Host | None:
        if mode == "none":
            return None
        if self.remote is not None and mode in ("inprocess", "http"):
            return HttpHost(
                self.remote.url,
                self.acquirer_credential,
                cafile=self.remote.cafile,
                pin_sha256=self.remote.pin_sha256,
                timeout=self.remote.timeout,
            )
        if mode == "inprocess":
            return ServiceHost(self.service, self.acquirer)
        if mode == "http":
            self._server = _HttpsServer(self.service, self.directory / "tls")
            return HttpHost(
                self.url,
                self.acquirer_credential,
                cafile=self._server.tls.ca_certificate,
                pin_sha256=bytes.fromhex(self._server.tls.fingerprint),
            )
        raise ValueError(f"host {mode!r}: expected inprocess, http or none")

    @property
    def url(self) -> str:
        """The token server's HTTPS URL (host mode "http", or a remote server)."""
        if self.remote is not None:
            return self.remote.url
        if self._server is None:
            raise ValueError("the token server is not served over HTTPS (host mode is not http)")
        return self._server.api.url

    # --- taps ----------------------------------------------------------------------------

    def transaction(
        self,
        amount: int,
        currency: str | None = None,
        type: TransactionType = TransactionType.PURCHASE,
        *,
        amount_other: int = 0,
    ) -> Transaction:
        """A transaction now, in ``currency`` (default: the terminal's, 5F2A), with a
        fresh Unpredictable Number."""
        return Transaction(
            amount=amount,
            currency=currency or self.config.currency.hex(),
            when=self._clock(),
            unpredictable_number=self._random(4),
            amount_other=amount_other,
            type=type,
        )

    def replenish(self) -> bool:
        """Top the phone up with a batch of ``server.keys`` keys (:data:`PHONE_KEYS` when
        that is 0) when it has no key left and the server state allows replenishment;
        whether a batch was loaded. A server that refuses (a
        suspended token) leaves the phone as it is, as a real wallet would."""
        phone = self.phone
        if phone is None or not self.server_state.replenish:
            return False
        if phone.wallet.usable_keys(phone.family) >= 1:
            return False
        try:
            phone.replenish(self.server_state.keys or PHONE_KEYS)
        except Conflict:
            return False
        except ServerError as err:  # over HTTPS: a refusal is 409 conflict
            if err.status != 409:
                raise
            return False
        return True

    def tap(
        self,
        amount: int,
        currency: str | None = None,
        type: TransactionType = TransactionType.PURCHASE,
        *,
        amount_other: int = 0,
        fault: Callable[[Link], Link] | None = None,
        host: Callable[[Host | None], Host | None] | None = None,
        config: TerminalConfig | None = None,
        replenish: bool = True,
    ) -> tuple[TransactionResult, Trace]:
        """Present the card for one transaction; the terminal's result and the trace.

        ``fault`` wraps the card's link below the recorder (the trace shows what the
        terminal saw), e.g. to corrupt a response; ``host`` wraps the terminal's host
        and ``config`` replaces its configuration for this tap only (the kernels, and
        Kernel 2's torn transaction log, are the terminal's own). A phone whose keys
        ran out is given a new batch first (:meth:`replenish`) unless ``replenish``
        is False."""
        if replenish:
            self.replenish()
        self.trace = Trace()
        card = self._link()
        link: Link = card if fault is None else fault(card)
        self.card = RecordingLink(link, self.trace, self.scenario_clock.ns)
        terminal = self.terminal
        if host is not None or config is not None:
            terminal = Terminal(
                config or self.config,
                self.host if host is None else host(self.host),
                self.terminal.kernels,
            )
        transaction = self.transaction(amount, currency, type, amount_other=amount_other)
        result = terminal.transact(self.card, transaction)
        self.last = result
        self.taps += 1
        return result, self.trace

    # --- closing -------------------------------------------------------------------------

    def close(self) -> None:
        """Take the card off its link, close the host's connection and stop the HTTPS
        server, close the store and an HSM of ``hsm``, remove a directory made here."""
        if self._attachment is not None:
            self._attachment.close()
            self._attachment = None
        if isinstance(self.host, HttpHost):
            self.host.close()
        if self._server is not None:
            self._server.stop()
            self._server = None
        if self._store is not None:
            self._store.close()
            self._store = None
        try:
            self._hsm_stack.close()
        finally:
            if self._owned:
                shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> TapEnvironment:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
