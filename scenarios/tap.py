"""One tap, wired end to end: a shipped card profile, its issuer or token server, a
terminal, and the host between them (the library behind ``emvtap tap``).

:class:`TapEnvironment` builds everything in a directory (a temporary one by
default) with the embedded defaults of DESIGN.md: a soft HSM whose master key is
made now, a SQLite store, an in-process link.

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

Each :meth:`TapEnvironment.tap` records the exchanges with a real clock
(:class:`emv.trace.RecordingLink`) and returns the terminal's
:class:`terminal.pos.TransactionResult` with the :class:`emv.trace.Trace`. The
Unpredictable Number (9F37, Book 3 Annex A) comes from ``os.urandom`` unless a
random source is given.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Literal

from emv.crypto import des, oda
from emv.link import Link
from emv.trace import RecordingLink, Trace
from hce.card import (
    Card,
    CardProfile,
    FileCounterStore,
    HceKeys,
    SoftIssuer,
    load_profile,
    personalise,
)
from hce.card.personalise import for_token, personalise_certified
from hce.hsm.interface import HsmError
from hce.hsm.soft import SoftHsm
from hce.server import Principal, ServerConfig, SqliteStore, TokenService
from hce.server.errors import ServiceError
from hce.server.http import ApiServer, tls_context
from hce.server.service import CA_KEY, KeyImport
from hce.server.tls import make_test_pki
from hce.wallet import Wallet, WalletFile
from terminal.config import TerminalConfig, default_config, with_ca_keys
from terminal.host import Host, HostResponse, HostUnavailable, HttpHost
from terminal.pos import Terminal, TransactionResult
from terminal.transaction import Transaction, TransactionType

__all__ = [
    "FUNDING_PANS",
    "HostMode",
    "Phone",
    "ServiceHost",
    "TapEnvironment",
    "provision",
]

HostMode = Literal["inprocess", "http", "none"]
FUNDING_PANS = {"visa": "4000123412341234", "mastercard": "5100123412341230"}
"""Funding PANs of the tokens an HCE environment enrols (Luhn-valid test numbers)."""
TOKEN_EXPIRY = "2912"  # YYMM
SCHEME_FAMILY: dict[str, Literal["LUK", "SUK"]] = {"visa": "LUK", "mastercard": "SUK"}
PHONE_KEYS = 5  # limited-use keys a phone is given at a time
Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


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


# --- a phone provisioned by the token server ---------------------------------------------------


@dataclass
class Phone:
    """A wallet provisioned by the token server, and the card the phone emulates with it."""

    service: TokenService
    profile: CardProfile  # the shipped HCE profile
    file: WalletFile
    wallet: Wallet
    device_id: str
    device: Principal
    token_id: str
    token_pan: str
    psn: bytes
    card: Card
    clock: Clock = field(default=_utc_now, repr=False)

    @property
    def family(self) -> Literal["LUK", "SUK"]:
        return SCHEME_FAMILY[self.profile.brand]

    def reopen(self) -> Wallet:
        """The wallet as it is on disk."""
        return Wallet.open(self.file, self.clock)

    def replenish(self, count: int) -> None:
        """A batch of ``count`` keys from the server, loaded into the wallet."""
        batch = self.service.issue_batch(self.device_id, self.family, count, actor=self.device)
        self.wallet.load_batch(batch.header.to_bytes(), batch.envelope)


def provision(
    service: TokenService,
    admin: Principal,
    profile: CardProfile,
    home: Path,
    *,
    keys: int = 3,
    funding_pan: str | None = None,
    clock: Clock = _utc_now,
) -> Phone:
    """Enrol a token for ``profile``'s brand, register the phone's device, personalise the
    card (the phone makes its ICC key, the server certifies the public half through its
    HSM) and load ``keys`` limited-use keys."""
    token = service.enrol_token(
        funding_pan or FUNDING_PANS[profile.brand],
        TOKEN_EXPIRY,
        "01",
        profile.brand,
        actor=admin,
    )
    home.mkdir(parents=True, exist_ok=True)
    file = WalletFile(home / "wallet", home / "device.secret", "phone-1")
    wallet = Wallet.register(file, clock)
    registered = service.register_device(token.token_id, wallet.device_point, actor=admin)
    device = service.authenticate(registered.credential)
    wallet.enrol(token.token_pan, bytes.fromhex(token.token_id))
    spec = next(app.oda for app in profile.applications if app.oda.enabled)
    icc_key = oda.generate_rsa_key(spec.icc_key_bits, spec.icc_exponent)
    answer = service.personalise_device(
        registered.device_id, profile.name, icc_key.public_key, actor=device
    )
    card_profile = for_token(
        profile,
        pan=token.token_pan,
        psn=answer.psn,
        expiry=answer.expiry,
        ca_index=answer.ca_index,
    )
    image = personalise_certified(card_profile, icc_key, answer.certificates)
    phone = Phone(
        service,
        profile,
        file,
        wallet,
        registered.device_id,
        device,
        token.token_id,
        token.token_pan,
        answer.psn,
        Card(image, HceKeys(wallet)),
        clock,
    )
    phone.replenish(keys)
    return phone


# --- the environment ---------------------------------------------------------------------------


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

    ``config`` is the terminal configuration (the shipped default when None); the
    card's CA key (:attr:`ca_key`) is added to its CA keys, replacing a configured
    key of the same RID and index, unless ``trust_card_ca`` is False (a terminal
    that lacks the key, or holds another one under its index). ``random`` gives
    the Unpredictable Numbers, ``clock`` the terminal's local date and time,
    ``server_config`` the token server's key limits."""

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
    ) -> None:
        self.profile = profile if isinstance(profile, CardProfile) else load_profile(profile)
        self._owned = directory is None
        self.directory = (
            Path(tempfile.mkdtemp(prefix="emvtap-tap-")) if directory is None else directory
        )
        self._random = random
        self._clock = clock
        self._server: _HttpsServer | None = None
        self._store: SqliteStore | None = None
        self.issuer: SoftIssuer | None = None
        self.phone: Phone | None = None
        self.trace = Trace()
        try:
            self._build(config, host, trust_card_ca, server_config)
        except BaseException:
            self.close()
            raise

    def _build(
        self,
        config: TerminalConfig | None,
        host: HostMode,
        trust_card_ca: bool,
        server_config: ServerConfig | None,
    ) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.hsm = SoftHsm.create(self.directory / "hsm.keys", os.urandom(32))
        self._store = SqliteStore(self.directory / "store.sqlite")
        self.service = TokenService(
            self.hsm, self._store, _utc_now, server_config or ServerConfig()
        )
        issuer = SoftIssuer() if self.profile.key_mode == "plastic" else None
        if issuer is not None:
            self.imk_ac = issuer.imk(self.profile.keys["imk_ac"])
        else:
            self.imk_ac = des.adjust_parity(os.urandom(16))
        summary = self.service.initialise(imk_ac=KeyImport(self.imk_ac, des.kcv(self.imk_ac)))
        if summary.admin_credential is None:  # a fresh store always makes one
            raise RuntimeError(f"{self.directory}: the token server store is not new")
        self.admin = self.service.authenticate(summary.admin_credential)
        self.acquirer_credential = self.service.create_credential(
            "acquirer", "emvtap-tap", actor=self.admin
        )
        self.acquirer = self.service.authenticate(self.acquirer_credential)
        ca_key: oda.CaPublicKey | None
        if issuer is not None:
            self.issuer = issuer
            self.emulated, ca_key = self._plastic_card(issuer)
        else:
            self.emulated, ca_key = self._hce_card()
        self.ca_key = ca_key  # the card's CA public key, None when it does no ODA
        base = config if config is not None else default_config()
        trusted = [ca_key] if trust_card_ca and ca_key is not None else []
        self.config = with_ca_keys(base, trusted)
        self.host = self._host(host)
        self.terminal = Terminal(self.config, self.host)
        self.card: Link = RecordingLink(self.emulated, self.trace, time.time_ns)

    def _plastic_card(self, issuer: SoftIssuer) -> tuple[Card, oda.CaPublicKey | None]:
        """The card under ``issuer``'s keys, enrolled with the issuer host; its CA key
        (None for a card without offline data authentication)."""
        profile = self.profile
        self.service.enrol_card(
            profile.pan,
            profile.expiry.hex()[:4],
            profile.psn.hex(),
            profile.brand,
            profile.applications[0].cryptogram_version,
            actor=self.admin,
        )
        image = personalise(profile, issuer.signer(profile))
        counters = FileCounterStore(self.directory / "counters.json")
        oda_done = any(app.oda.enabled for app in profile.applications)
        ca_key = issuer.ca_public_key(profile) if oda_done else None
        return Card(image, issuer.plastic_keys(profile, counters)), ca_key

    def _hce_card(self) -> tuple[Card, oda.CaPublicKey]:
        """The phone's card, provisioned; the server's CA key under the AID's RID and
        the index personalisation gave (8F)."""
        self.phone = provision(
            self.service, self.admin, self.profile, self.directory / "phone", keys=PHONE_KEYS
        )
        card = self.phone.card
        app = next(app for app in card.image.profile.applications if app.oda.enabled)
        server_ca = self.hsm.rsa_public_key(CA_KEY).oda_key()
        return card, oda.CaPublicKey(app.aid[:5], app.oda.ca_index, server_ca)

    def _host(self, mode: HostMode) -> Host | None:
        if mode == "none":
            return None
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
        """The token server's HTTPS URL (host mode "http" only)."""
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

    def tap(
        self,
        amount: int,
        currency: str | None = None,
        type: TransactionType = TransactionType.PURCHASE,
        *,
        amount_other: int = 0,
        fault: Callable[[Link], Link] | None = None,
    ) -> tuple[TransactionResult, Trace]:
        """Present the card for one transaction; the terminal's result and the trace.

        ``fault`` wraps the card's link below the recorder (the trace shows what the
        terminal saw), e.g. to corrupt a response. A phone whose keys ran out is
        given a new batch first."""
        if self.phone is not None and self.phone.wallet.usable_keys(self.phone.family) < 1:
            self.phone.replenish(PHONE_KEYS)
        self.trace = Trace()
        link: Link = self.emulated if fault is None else fault(self.emulated)
        self.card = RecordingLink(link, self.trace, time.time_ns)
        transaction = self.transaction(amount, currency, type, amount_other=amount_other)
        return self.terminal.transact(self.card, transaction), self.trace

    # --- closing -------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the HTTPS server, close the store, remove a directory made here."""
        if self._server is not None:
            self._server.stop()
            self._server = None
        if self._store is not None:
            self._store.close()
            self._store = None
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
