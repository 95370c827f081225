"""Pkcs11Hsm: the :class:`~hce.hsm.interface.Hsm` backend on a PKCS#11 token (python-pkcs11).

Keys are token objects named by our labels: DES2 issuer master keys (DERIVE
only), AES vault keys (ENCRYPT/DECRYPT/SIGN), RSA key pairs whose two halves
share the label. Every stored secret is CKA_SENSITIVE and not CKA_EXTRACTABLE.
Every derived key is a session object (CKA_TOKEN false, sensitive, never
extractable, and either DERIVE or ENCRYPT, never both), destroyed before the call
returns, but for the ICC master keys of "What is kept between calls" below.

What runs in the token:

* ICC master keys (EMV Book 2 A1.4.1 option A, A1.4.2 option B), CBP keys
  (docs/cbp.md "Keys"), common session keys (A1.3.1) and M/Chip session keys:
  CKM_DES3_ECB_ENCRYPT_DATA over ``Y || Y'``. Only the inputs are computed on
  the host, from public data (option B's SHA-1 decimalisation of the PAN too).
* ARPC method 1 (§8.2.1): CKM_DES3_ECB; key check values: CKM_DES3_ECB of zeros
  for derived keys, CKA_CHECK_VALUE for stored ones.
* AES-GCM (CKM_AES_GCM, a 12-byte random nonce prepended, as ``soft.py``),
  AES-CMAC (CKM_AES_CMAC), RSA key generation and the raw private operation
  (CKM_RSA_X_509, Annex A2.1.2).
* The device envelope (``emv.crypto.wrap``, "ECW2"): an ephemeral P-256 key
  pair (CKM_EC_KEY_PAIR_GEN), Z (CKM_ECDH1_DERIVE, CKD_NULL, as an AES-256 key),
  KEK and KMAC (CKM_AES_ECB_ENCRYPT_DATA), each limited-use key derived
  SENSITIVE and EXTRACTABLE and leaving only as CKM_AES_KEY_WRAP_PAD under the
  KEK, and the tag (CKM_AES_CMAC under KMAC). The host assembles the TLV.

What leaves the token besides results:

* The retail MAC (ISO/IEC 9797-1 algorithm 3, Book 2 A1.2.1) of application
  cryptograms and ARPC method 2. Standard PKCS#11 has no such mechanism
  (CKM_DES3_MAC and CKM_DES3_MAC_GENERAL are triple DES on *every* block,
  algorithm 1), and SoftHSMv2 has no single DES without OpenSSL's legacy
  provider. So beside the key K = KL || KR, derived from its parent P as
  DES3(P)[dL || dR], the token derives its twin DES3(P)[dL || dL] = KL || KL,
  which enciphers as single DES under KL. H = CBC-MAC under the twin of all
  blocks but the last leaves the token, then the MAC is one CKM_DES3_CBC block
  under K with IV H. H is a single-DES CBC-MAC under KL of public data: it
  opens KL, then with the MAC KR, of that one working key to two 2^56
  searches. That is a session or limited-use key, or for a path without either
  (CVN 10 style) the card's ICC master key; never the issuer master key. A
  vendor HSM with its own retail-MAC mechanism avoids H; this module uses only
  standard mechanisms.
* The masked SUK-UV: the token masks it (CKM_AES_CBC key wrap, zero IV, one
  block: AES-256-ECB under the PIN key, ``cbp.mask_key``), the masked value
  passes through the host and is put back as a session object to be wrapped
  under the KEK. The caller gave the PIN key, so the host could unmask it:
  PKCS#11 has no mechanism to wrap a wrapped key.

What is kept between calls (the token's cost is in C_FindObjects and C_DeriveKey,
above all on token objects, not in the DES):

* The handle of each issuer master key, found on its first use; found again only
  if the token says it turned invalid (another process destroyed the object),
  and then every key kept below it is destroyed. So an IMK that another process
  replaces under the same label is noticed when its handle is next used (for a
  card whose keys are not kept); until then the kept keys of the old one serve.
* The ICC master keys of the last cards used (:data:`CARD_KEYS` objects, by IMK
  label, PAN, PSN and option): per card its DERIVE form (the parent of its
  session and limited-use keys), its ENCRYPT form (ARPC method 1 under it, key
  check values) and its twin, each derived on its first use. Closing the session
  destroys them.

Within one call each key is derived once: :meth:`Pkcs11Hsm.verify_arqc_and_generate_arpc`
(an :class:`~hce.hsm.interface.ArqcVerifier`) makes the ARPC under the AC's own keys
when its key path is the AC's. Nothing is kept by ATC and no result is kept: every
cryptogram is computed by the token.

The token is not a security boundary against whoever holds the user PIN (a DERIVE
key can derive readable keys if asked): this module never asks, and exposes no
session. One lock serialises the calls on the single logged-in session.

Label namespaces: with ``label_prefix`` (e.g. ``"emvtap-env-3f9c.../"``) every label
the caller names is stored on the token as prefix + label, so several users of one
token (each scenario of ``emvtap run --hsm pkcs11:...``) keep their keys apart: a
caller sees, finds and lists only its own labels, unprefixed, and
:meth:`Pkcs11Hsm.destroy_namespace` removes them all. Every object of a namespace
also has the prefix's bytes as CKA_ID, so the namespace is found by an exact search
(C_FindObjects on TOKEN and ID) that never hands this session another user's
objects, which another process may be destroying meanwhile. Without a prefix (the token
server of ``emvtap server``) labels are stored as given and :meth:`Pkcs11Hsm.labels`
lists the whole token. PKCS#11 login state is per process and token: open one
Pkcs11Hsm per token at a time in a process (separate processes are independent).

The module is initialised, and sessions opened and closed, one process at a time
(:func:`_one_process_at_a_time`): with SoftHSMv2 2.6.1 (Debian 12's) two processes
that initialise it, look a token up and open or close sessions on it at the same
moment now and then get GeneralError, NoSuchToken or UserPinNotInitialized, or see
no initialised token, and the process that does may keep failing; what runs inside
an open session (keys made, used and destroyed) does not need it. Two processes
opening and closing sessions 300 times each failed in each of a dozen runs without
the lock, and in none with it (tests/hce/hsm/test_pkcs11_processes.py).
"""

from __future__ import annotations

import ctypes
import dataclasses
import fcntl
import hmac
import os
import struct
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast

import pkcs11
from pkcs11 import KDF, Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass, TokenFlag
from pkcs11.mechanisms import GCMParams
from pkcs11.util.ec import encode_named_curve_parameters

from emv.crypto import ac, cbp, des, kd, mac, oda, wrap
from emv.crypto.checks import require_length
from emv.crypto.wrap import BatchKind
from hce.hsm.interface import (
    Arpc,
    ArpcMethod1,
    ArpcMethod2,
    ArqcVerifier,
    BatchRequest,
    HsmError,
    IccMaster,
    KeyInfo,
    KeyKind,
    KeyNotFound,
    KeyPath,
    LimitedUse,
    MastercardSession,
    RsaPublic,
    Session,
)

if TYPE_CHECKING:
    from pkcs11._pkcs11 import lib as Library
    from pkcs11.types import DecryptMixin, DeriveMixin, EncryptMixin, SignMixin, WrapMixin

    class _Key(pkcs11.SecretKey, EncryptMixin, DecryptMixin, SignMixin, WrapMixin, DeriveMixin):
        """What a secret key object is at run time (python-pkcs11 mixes the
        capabilities in; its annotations do not say so)."""

    class _PrivateKey(pkcs11.PrivateKey, SignMixin, DeriveMixin):
        """An RSA or EC private key object, likewise."""


__all__ = ["Pkcs11Hsm", "library"]

KCV_LENGTH = 3
GCM_NONCE_LENGTH = 12
GCM_TAG_BITS = 128
PIN_KEY_LENGTH = 32
AES_BLOCK = bytes(16)
P256 = encode_named_curve_parameters("secp256r1")
DER_POINT_PREFIX = b"\x04\x41"  # CKA_EC_POINT: the 65-byte point as a DER OCTET STRING

# Every secret we store or derive: readable by no one (CKA_VALUE refused).
SECRET = {Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False}
# A limited-use key on its way into an envelope: it may leave, only wrapped.
WRAPPABLE = {Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: True}
# CKM_DES3_ECB_ENCRYPT_DATA takes the length from the key type: no CKA_VALUE_LEN. Nor
# python-pkcs11's empty CKA_ID and CKA_LABEL: a session key needs neither, and every
# attribute costs the token time.
DERIVED = {
    Attribute.VALUE_LEN: pkcs11.DEFAULT,
    Attribute.ID: pkcs11.DEFAULT,
    Attribute.LABEL: pkcs11.DEFAULT,
}

USES = (
    Attribute.ENCRYPT,
    Attribute.DECRYPT,
    Attribute.WRAP,
    Attribute.UNWRAP,
    Attribute.SIGN,
    Attribute.VERIFY,
    Attribute.DERIVE,
)


def _only(*uses: Attribute) -> dict[Attribute, bool]:
    """Every key-usage attribute, true for ``uses`` alone: C_CreateObject would
    otherwise take the token's defaults (SoftHSMv2: ENCRYPT, SIGN... all true)."""
    return {use: use in uses for use in USES}


# An issuer master key only derives: DES3 under it of chosen data would be an ICC
# master key in clear.
MASTER_USES = {
    KeyKind.DES2: _only(Attribute.DERIVE),
    KeyKind.AES128: _only(Attribute.ENCRYPT, Attribute.DECRYPT, Attribute.SIGN),
    KeyKind.AES256: _only(Attribute.ENCRYPT, Attribute.DECRYPT, Attribute.SIGN),
}
KEY_LENGTHS = {KeyKind.DES2: 16, KeyKind.AES128: 16, KeyKind.AES256: 32}
AES_KINDS = (KeyKind.AES128, KeyKind.AES256)
PADDINGS = {"emv": mac.pad_iso9797_1_method_2, "visa": mac.pad_iso9797_1_method_1}
# The ICC master key objects kept between calls (module docstring): 32 cards. Each
# session object costs every C_FindObjects a little (SoftHSMv2 scans them all).
CARD_KEYS = 96

# The three forms of an ICC master key (module docstring).
CardUse = Literal["derive", "encrypt", "twin"]
CARD_CAPABILITIES = {
    "derive": MechanismFlag.DERIVE,
    "encrypt": MechanismFlag.ENCRYPT,
    "twin": MechanismFlag.ENCRYPT,
}

_Object = TypeVar("_Object", bound=pkcs11.Object)

_loading = threading.Lock()
_libraries: dict[str, Library] = {}  # by path: what library() loaded in this process


def library(module: str | os.PathLike[str]) -> Library:
    """The PKCS#11 module at ``module``, loaded and initialised (C_Initialize) once
    per process, as PKCS#11 allows; HsmError if it is not there or will not load."""
    path = os.fspath(module)
    if not Path(path).is_file():
        raise HsmError(f"PKCS#11 module {path}: no such file")
    with _loading:
        loaded = _libraries.get(path)
        if loaded is None:
            with _one_process_at_a_time(path):  # C_Initialize reads the tokens (module docstring)
                try:
                    loaded = _libraries[path] = pkcs11.lib(path)
                except pkcs11.PKCS11Error as err:
                    raise HsmError(f"PKCS#11 module {path}: cannot be loaded ({err})") from None
        return loaded


# --- derivation inputs: public data, computed on the host ---------------------------------


def _icc_data(icc: IccMaster) -> bytes:
    """Y || Y' of the ICC master key, option A or B (Book 2 A1.4.1 / A1.4.2)."""
    return kd.icc_mk_derivation_data(icc.pan, icc.psn, icc.option)


def _limited_use_data(key: LimitedUse) -> bytes:
    """The CBP key input (docs/cbp.md "Keys")."""
    return cbp.diversification_data(cbp.KeyDomain(key.kind), key.ident)


def _session_data(session: Session) -> bytes:
    """F1 || F2 of the TDEA common session key (Book 2 A1.3.1); for M/Chip,
    R = ATC || '0000' || UN."""
    if isinstance(session, MastercardSession):
        return kd.common_sk_derivation_data(kd.mastercard_sk_r(session.atc, session.un))
    return kd.common_sk_derivation_data(session.r)


def _card_data(icc: IccMaster, use: CardUse) -> bytes:
    """The input of the ICC master key of ``icc`` in the form ``use`` (its twin's, or its own)."""
    data = _icc_data(icc)
    return _twin_data(data) if use == "twin" else data


def _steps_below_icc(path: KeyPath) -> list[bytes]:
    """One CKM_DES3_ECB_ENCRYPT_DATA input per step from the ICC master key to ``path``
    (none: the ICC master key is the working key)."""
    steps = []
    if path.limited_use is not None:
        steps.append(_limited_use_data(path.limited_use))
    if path.session is not None:
        steps.append(_session_data(path.session))
    return steps


def _twin_data(data: bytes) -> bytes:
    """dL || dL: derives KL || KL, single DES under KL (see the module docstring)."""
    return data[: des.BLOCK_SIZE] * 2


# --- token objects --------------------------------------------------------------------------


def _stored(label: str, kind: KeyKind) -> dict[Attribute, Any]:
    """The template of a stored symmetric key: private, sensitive, never extractable."""
    return {
        Attribute.LABEL: label,
        Attribute.TOKEN: True,
        Attribute.PRIVATE: True,
        **SECRET,
        **MASTER_USES[kind],
    }


def _kind(key: pkcs11.SecretKey) -> KeyKind | None:
    key_type = key[Attribute.KEY_TYPE]
    if key_type == KeyType.DES2:
        return KeyKind.DES2
    if key_type == KeyType.AES:
        return {16: KeyKind.AES128, 32: KeyKind.AES256}.get(key[Attribute.VALUE_LEN])
    return None


def _point(public: pkcs11.PublicKey) -> bytes:
    """The uncompressed 65-byte point of an EC public key object."""
    point = bytes(public[Attribute.EC_POINT])
    return point.removeprefix(DER_POINT_PREFIX)


def _derive_des2(
    parent: _Key,
    data: bytes,
    capabilities: MechanismFlag,
    template: dict[Attribute, Any],
) -> _Key:
    """CKM_DES3_ECB_ENCRYPT_DATA: the DES2 session key DES3(parent)[data] (odd parity).
    The parameter is a packed CK_KEY_DERIVATION_STRING_DATA {pData, ulLen}."""
    buffer = ctypes.create_string_buffer(data, len(data))
    parameter = struct.pack("PL", ctypes.addressof(buffer), len(data))
    key = parent.derive_key(
        KeyType.DES2,
        128,
        capabilities=capabilities,
        mechanism=Mechanism.DES3_ECB_ENCRYPT_DATA,
        mechanism_param=parameter,
        template={**template, **DERIVED},
    )
    return cast("_Key", key)


def _encrypt(key: _Key, data: bytes, mechanism: Mechanism, parameter: Any = None) -> bytes:
    """C_Encrypt of one buffer (python-pkcs11 returns bytes for bytes)."""
    return cast(bytes, key.encrypt(data, mechanism=mechanism, mechanism_param=parameter))


def _retail_mac(key: _Key, twin: _Key, padded: bytes) -> bytes:
    """ISO/IEC 9797-1 MAC algorithm 3 (Book 2 A1.2.1) of padded data with the twin
    key: CKM_DES3_CBC under KL || KL over all blocks but the last gives H, then
    one CKM_DES3_CBC block under K with IV H."""
    head, last = padded[: -des.BLOCK_SIZE], padded[-des.BLOCK_SIZE :]
    chain = des.ZERO_IV
    if head:
        chain = _encrypt(twin, head, Mechanism.DES3_CBC, des.ZERO_IV)[-des.BLOCK_SIZE :]
    return _encrypt(key, last, Mechanism.DES3_CBC, chain)


class _Scratch:
    """The session objects made during one call, destroyed when it ends."""

    def __init__(self) -> None:
        self.objects: list[pkcs11.Object] = []
        self._derived: dict[tuple[int | None, bytes, MechanismFlag], _Key] = {}

    def keep(self, obj: _Object) -> _Object:
        self.objects.append(obj)
        return obj

    def derive(self, parent: _Key, data: bytes, capability: MechanismFlag) -> _Key:
        """DES3(parent)[data] with ``capability``, derived once in this call."""
        name = (parent.handle, data, capability)
        key = self._derived.get(name)
        if key is None:
            key = self._derived[name] = self.keep(_derive_des2(parent, data, capability, SECRET))
        return key

    def destroy(self) -> None:
        for obj in reversed(self.objects):
            obj.destroy()


_CardName = tuple[str, IccMaster, CardUse]  # IMK label, card, form


class _CardKeys:
    """The ICC master keys kept between calls (module docstring): at most ``size``, the
    least recently used destroyed first."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._keys: OrderedDict[_CardName, _Key] = OrderedDict()

    def get(self, name: _CardName) -> _Key | None:
        key = self._keys.get(name)
        if key is not None:
            self._keys.move_to_end(name)
        return key

    def put(self, name: _CardName, key: _Key) -> None:
        self._keys[name] = key
        while len(self._keys) > self._size:
            self._keys.popitem(last=False)[1].destroy()

    def discard(self, imk: str) -> None:
        """Destroy the keys derived from the issuer master key ``imk``."""
        for name in [name for name in self._keys if name[0] == imk]:
            self._keys.pop(name).destroy()

    def forget(self) -> None:
        """Forget every key without destroying it (its session is closed)."""
        self._keys.clear()


@contextmanager
def _one_process_at_a_time(module: str | os.PathLike[str]) -> Iterator[None]:
    """An exclusive flock(2) on the module's file while a token is looked up and a
    session opened, or a session closed (module docstring): every process that uses
    the module this way waits its turn; the lock goes with the file's closing."""
    with open(module, "rb") as file:
        fcntl.flock(file, fcntl.LOCK_EX)
        yield


def _only_token(module: str | os.PathLike[str]) -> pkcs11.Token:
    """The one initialised token of ``module``; HsmError if there is none or several."""
    where = f"PKCS#11 module {os.fspath(module)}"
    try:
        tokens = list(library(module).get_tokens(token_flags=TokenFlag.TOKEN_INITIALIZED))
    except pkcs11.PKCS11Error as err:
        raise HsmError(f"{where}: cannot list its tokens ({type(err).__name__})") from None
    if not tokens:
        raise HsmError(f"{where}: no initialised token")
    if len(tokens) > 1:
        names = ", ".join(repr(token.label) for token in tokens)
        raise HsmError(f"{where}: several tokens ({names}): name one")
    return tokens[0]


def _token(module: str | os.PathLike[str], label: str) -> pkcs11.Token:
    """The token labelled ``label`` of ``module``; HsmError if there is none."""
    where = f"PKCS#11 token {label!r} of {os.fspath(module)}"
    try:
        return library(module).get_token(token_label=label)
    except pkcs11.NoSuchToken:
        raise HsmError(f"{where}: no such token") from None
    except pkcs11.PKCS11Error as err:
        raise HsmError(f"{where}: {type(err).__name__}") from None


class Pkcs11Hsm(ArqcVerifier):
    """The HSM on the PKCS#11 token labelled ``token_label`` of ``module`` (None: the
    module's only initialised token), logged in with ``user_pin`` on one read-write
    session. Thread-safe (one lock per instance).

    ``label_prefix`` namespaces the keys (module docstring): every label is stored
    as ``label_prefix + label``, and only those labels are visible."""

    def __init__(
        self,
        module: str | os.PathLike[str],
        token_label: str | None,
        user_pin: str,
        *,
        label_prefix: str = "",
    ) -> None:
        library(module)  # a clear error for a missing module before its file is opened
        with _one_process_at_a_time(module):
            token = _only_token(module) if token_label is None else _token(module, token_label)
            where = f"PKCS#11 token {token.label!r} of {os.fspath(module)}"
            try:
                self._session = token.open(user_pin=user_pin, rw=True)
            except (pkcs11.PinIncorrect, pkcs11.PinLenRange, pkcs11.PinLocked) as err:
                raise HsmError(f"{where}: login refused ({type(err).__name__})") from None
            except pkcs11.PKCS11Error as err:
                raise HsmError(f"{where}: cannot open a session ({type(err).__name__})") from None
        self._module = os.fspath(module)
        self._where = where
        self._prefix = label_prefix
        self._lock = threading.Lock()
        self._open = True
        # What is kept between calls (module docstring), by the caller's labels.
        self._masters: dict[str, _Key] = {}
        self._cards = _CardKeys(CARD_KEYS)

    def __repr__(self) -> str:
        namespace = f", labels {self._prefix!r}..." if self._prefix else ""
        return f"Pkcs11Hsm({self._where}{namespace})"

    @property
    def label_prefix(self) -> str:
        """What every label of this instance is prefixed with on the token ("" for none)."""
        return self._prefix

    def _stored_label(self, label: str) -> str:
        """The token's CKA_LABEL for the caller's ``label``."""
        return self._prefix + label

    def _owned(self) -> dict[Attribute, Any]:
        """The template of every object this instance stores, beside its label: a
        stored object, and with a prefix CKA_ID = the prefix (module docstring)."""
        if not self._prefix:
            return {Attribute.TOKEN: True}
        return {Attribute.TOKEN: True, Attribute.ID: self._prefix.encode()}

    def close(self) -> None:
        """Log out and close the session, once (the module stays loaded for the process)."""
        with self._lock:
            if self._open:
                self._open = False
                self._masters.clear()
                self._cards.forget()
                with _one_process_at_a_time(self._module):
                    self._session.close()

    def __enter__(self) -> Pkcs11Hsm:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # --- plumbing -----------------------------------------------------------------------

    @contextmanager
    def _call(self, operation: str, label: str) -> Iterator[_Scratch]:
        """One operation: holds the lock, destroys its session objects at the end, and
        reports a bad argument or a token refusal as HsmError naming the operation
        and the key label (python-pkcs11's exceptions carry no key value; only their
        type is shown)."""
        scratch = _Scratch()
        with self._lock:
            try:
                if not self._open:
                    raise HsmError(f"{operation}: {self._where} is closed")
                try:
                    yield scratch
                finally:
                    scratch.destroy()
            except HsmError:
                raise
            except (ValueError, OverflowError) as err:
                raise HsmError(f"{operation} with key {label!r}: {err}") from None
            except pkcs11.PKCS11Error as err:
                raise HsmError(
                    f"{operation} with key {label!r}: the token refused ({type(err).__name__})"
                ) from None

    def _find(self, object_class: ObjectClass, label: str) -> pkcs11.Object | None:
        """The stored object of that class and label (C_FindObjects run to its end)."""
        template = {
            **self._owned(),
            Attribute.CLASS: object_class,
            Attribute.LABEL: self._stored_label(label),
        }
        found = list(self._session.get_objects(template))
        return found[0] if found else None

    def _describe(self, label: str) -> str:
        """What ``label`` is, for a wrong-kind message; KeyNotFound if nothing."""
        key = self._find(ObjectClass.SECRET_KEY, label)
        if isinstance(key, pkcs11.SecretKey):
            kind = _kind(key)
            return kind.value if kind is not None else "a key of another type"
        if self._find(ObjectClass.PRIVATE_KEY, label) is not None:
            return "an RSA key"
        raise KeyNotFound(f"no key labelled {label!r}")

    def _secret(
        self, operation: str, label: str, kinds: Sequence[KeyKind] = tuple(KeyKind)
    ) -> tuple[_Key, KeyKind]:
        key = self._find(ObjectClass.SECRET_KEY, label)
        kind = _kind(key) if isinstance(key, pkcs11.SecretKey) else None
        if kind is None or kind not in kinds:
            expected = " or ".join(k.value for k in kinds)
            raise HsmError(
                f"{operation}: key {label!r} is {self._describe(label)}, expected {expected}"
            )
        return cast("_Key", key), kind

    def _rsa(self, operation: str, label: str) -> _PrivateKey:
        key = self._find(ObjectClass.PRIVATE_KEY, label)
        if not isinstance(key, pkcs11.PrivateKey) or key[Attribute.KEY_TYPE] != KeyType.RSA:
            raise HsmError(f"{operation}: key {label!r} is {self._describe(label)}, not an RSA key")
        return cast("_PrivateKey", key)

    def _claim(self, label: str) -> None:
        """Refuse an empty label or one that any stored object already has."""
        if not label:
            raise HsmError("a key label must not be empty")
        template = {Attribute.LABEL: self._stored_label(label), Attribute.TOKEN: True}
        if list(self._session.get_objects(template)):
            raise HsmError(f"label {label!r} is taken")

    # --- symmetric keys -----------------------------------------------------------------

    def generate_key(self, label: str, kind: KeyKind) -> KeyInfo:
        """A new key made by the token (CKM_DES2_KEY_GEN / CKM_AES_KEY_GEN)."""
        with self._call("generate_key", label):
            self._claim(label)
            des2 = kind is KeyKind.DES2
            key = self._session.generate_key(
                KeyType.DES2 if des2 else KeyType.AES,
                None if des2 else KEY_LENGTHS[kind] * 8,
                capabilities=MechanismFlag(0),
                template={**_stored(self._stored_label(label), kind), **self._owned()},
            )
            return KeyInfo(label, kind, bytes(key[Attribute.CHECK_VALUE]))

    def import_key(self, label: str, kind: KeyKind, value: bytes, kcv: bytes) -> KeyInfo:
        """Store a clear key (C_CreateObject), refused unless the token's check value of
        it equals ``kcv``; on refusal the object is destroyed again."""
        with self._call("import_key", label) as scratch:
            if len(value) != KEY_LENGTHS[kind]:
                raise HsmError(
                    f"import_key {label!r}: a {kind.value} key is {KEY_LENGTHS[kind]} bytes,"
                    f" got {len(value)}"
                )
            self._claim(label)
            key = self._session.create_object(
                {
                    Attribute.CLASS: ObjectClass.SECRET_KEY,
                    Attribute.KEY_TYPE: KeyType.DES2 if kind is KeyKind.DES2 else KeyType.AES,
                    Attribute.VALUE: value,
                    **_stored(self._stored_label(label), kind),
                    **self._owned(),
                }
            )
            check_value = bytes(key[Attribute.CHECK_VALUE])
            if not hmac.compare_digest(check_value, kcv):
                scratch.keep(key)
                raise HsmError(
                    f"import_key {label!r}: the key does not match the check value given"
                )
            return KeyInfo(label, kind, check_value)

    def key_info(self, label: str) -> KeyInfo:
        """Label, kind and CKA_CHECK_VALUE (3DES or AES ECB of zeros, 3 bytes)."""
        with self._call("key_info", label):
            key, kind = self._secret("key_info", label)
            return KeyInfo(label, kind, bytes(key[Attribute.CHECK_VALUE]))

    def labels(self) -> list[str]:
        """The labels of the stored objects in this instance's namespace (unprefixed);
        without a prefix, of every stored object on the token."""
        with self._call("labels", ""):
            return sorted({self._unprefixed(obj) for obj in self._namespace()})

    def _namespace(self) -> list[pkcs11.Object]:
        """Every stored object of this instance's namespace (with a prefix: its CKA_ID
        and label prefix; without: the whole token)."""
        objects = list(self._session.get_objects(self._owned()))
        return [obj for obj in objects if str(obj[Attribute.LABEL]).startswith(self._prefix)]

    def _unprefixed(self, obj: pkcs11.Object) -> str:
        return str(obj[Attribute.LABEL]).removeprefix(self._prefix)

    def destroy_namespace(self) -> int:
        """Destroy every stored object of this instance's namespace (its keys, both
        halves of its RSA pairs); how many were destroyed. Refused without a label
        prefix: that would empty the whole token."""
        with self._call("destroy_namespace", self._prefix):
            if not self._prefix:
                raise HsmError(
                    f"destroy_namespace: {self._where} has no label prefix (it would destroy"
                    " every key on the token)"
                )
            objects = self._namespace()
            for label in list(self._masters):
                self._forget_master(label)
            for obj in objects:
                obj.destroy()
            return len(objects)

    # --- key paths and cryptograms ------------------------------------------------------

    def _master(self, operation: str, label: str) -> _Key:
        """The issuer master key ``label``, its handle found once and kept."""
        key = self._masters.get(label)
        if key is None:
            key, _ = self._secret(operation, label, (KeyKind.DES2,))
            self._masters[label] = key
        return key

    def _forget_master(self, label: str) -> None:
        """Drop the handle of the issuer master key ``label``; destroy every key kept below it."""
        self._masters.pop(label, None)
        self._cards.discard(label)

    def _card_key(self, operation: str, imk: str, icc: IccMaster, use: CardUse) -> _Key:
        """The ICC master key of ``icc`` under ``imk`` (Book 2 A1.4.1 / A1.4.2) in the form
        ``use``: kept (module docstring), else derived from the issuer master key, found
        again once if its handle turned invalid."""
        name = (imk, icc, use)
        kept = self._cards.get(name)
        if kept is not None:
            return kept
        data, capability = _card_data(icc, use), CARD_CAPABILITIES[use]
        try:
            key = _derive_des2(self._master(operation, imk), data, capability, SECRET)
        except (pkcs11.ObjectHandleInvalid, pkcs11.KeyHandleInvalid):
            self._forget_master(imk)
            key = _derive_des2(self._master(operation, imk), data, capability, SECRET)
        self._cards.put(name, key)
        return key

    def _working_keys(
        self, scratch: _Scratch, operation: str, path: KeyPath, *, twin: bool
    ) -> tuple[_Key, _Key]:
        """The key at ``path`` and, if ``twin``, its twin KL || KL for the retail MAC (else
        the key again): the kept ICC master key, or derived in the token below it."""
        steps = _steps_below_icc(path)
        if not steps:
            key = self._card_key(operation, path.imk, path.icc, "encrypt")
            return key, self._card_key(operation, path.imk, path.icc, "twin") if twin else key
        parent = self._card_key(operation, path.imk, path.icc, "derive")
        *parents, last = steps
        for data in parents:
            parent = scratch.derive(parent, data, MechanismFlag.DERIVE)
        key = scratch.derive(parent, last, MechanismFlag.ENCRYPT)
        if not twin:
            return key, key
        return key, scratch.derive(parent, _twin_data(last), MechanismFlag.ENCRYPT)

    def _cryptogram(
        self,
        scratch: _Scratch,
        operation: str,
        path: KeyPath,
        data: bytes,
        padding: Literal["emv", "visa"],
    ) -> bytes:
        """The cryptogram of EMV Book 2 §8.1.2 (MAC of A1.2.1) under the key at ``path``."""
        if padding not in PADDINGS:
            raise ValueError(f'padding must be "emv" or "visa", got {padding!r}')
        key, twin = self._working_keys(scratch, operation, path, twin=True)
        return _retail_mac(key, twin, PADDINGS[padding](data))

    def _arpc(
        self, scratch: _Scratch, operation: str, path: KeyPath, arqc: bytes, arpc: Arpc
    ) -> bytes:
        """The ARPC of ``arqc`` under the key at ``path``: method 1 (EMV Book 2 §8.2.1),
        CKM_DES3_ECB of ARQC xor (ARC || '00'x6); method 2 (§8.2.2), the retail MAC of
        ARQC || CSU || proprietary authentication data || PAD, leftmost 4 bytes."""
        require_length("arqc", arqc, 8)
        if isinstance(arpc, ArpcMethod1):
            require_length("arc", arpc.arc, 2)
            key, _ = self._working_keys(scratch, operation, path, twin=False)
            y = bytes(a ^ b for a, b in zip(arqc, arpc.arc + bytes(6), strict=True))
            return _encrypt(key, y, Mechanism.DES3_ECB)
        require_length("csu", arpc.csu, 4)
        if len(arpc.prop_auth_data) > 8:
            raise ValueError(
                f"prop_auth_data must be 0 to 8 bytes long, got {len(arpc.prop_auth_data)}"
            )
        padded = mac.pad_iso9797_1_method_2(arqc + arpc.csu + arpc.prop_auth_data)
        key, twin = self._working_keys(scratch, operation, path, twin=True)
        return _retail_mac(key, twin, padded)[: ac.ARPC_2_LENGTH]

    def application_cryptogram(
        self, path: KeyPath, data: bytes, padding: Literal["emv", "visa"]
    ) -> bytes:
        """The cryptogram of EMV Book 2 §8.1.2 (MAC of A1.2.1) under the key at ``path``."""
        operation = "application_cryptogram"
        with self._call(operation, path.imk) as scratch:
            return self._cryptogram(scratch, operation, path, data, padding)

    def verify_application_cryptogram(
        self, path: KeyPath, data: bytes, padding: Literal["emv", "visa"], cryptogram: bytes
    ) -> bool:
        return hmac.compare_digest(self.application_cryptogram(path, data, padding), cryptogram)

    def arpc_method_1(self, path: KeyPath, arqc: bytes, arc: bytes) -> bytes:
        """ARPC method 1 (EMV Book 2 §8.2.1)."""
        with self._call("arpc_method_1", path.imk) as scratch:
            return self._arpc(scratch, "arpc_method_1", path, arqc, ArpcMethod1(arc))

    def arpc_method_2(
        self, path: KeyPath, arqc: bytes, csu: bytes, prop_auth_data: bytes = b""
    ) -> bytes:
        """ARPC method 2 (EMV Book 2 §8.2.2)."""
        with self._call("arpc_method_2", path.imk) as scratch:
            arpc = ArpcMethod2(csu, prop_auth_data)
            return self._arpc(scratch, "arpc_method_2", path, arqc, arpc)

    def verify_arqc_and_generate_arpc(
        self,
        path: KeyPath,
        data: bytes,
        padding: Literal["emv", "visa"],
        arqc: bytes,
        *,
        arpc: Arpc,
        arpc_session: Session | None,
    ) -> bytes | None:
        """Verify the ARQC (Book 2 §8.1.2) under the key at ``path`` and, if it verifies,
        make the ARPC (§8.2) under the key with ``arpc_session``, in one call: the key
        path is derived once for both (the AC's keys themselves when ``arpc_session`` is
        the AC's), :func:`hce.hsm.interface.verify_arqc_and_generate_arpc`."""
        operation = "verify_arqc_and_generate_arpc"
        with self._call(operation, path.imk) as scratch:
            cryptogram = self._cryptogram(scratch, operation, path, data, padding)
            if not hmac.compare_digest(cryptogram, arqc):
                return None
            arpc_path = dataclasses.replace(path, session=arpc_session)
            return self._arpc(scratch, operation, arpc_path, arqc, arpc)

    def key_check_value(self, path: KeyPath) -> bytes:
        """CKM_DES3_ECB of 8 zero bytes under the key at ``path``, leftmost 3 bytes."""
        with self._call("key_check_value", path.imk) as scratch:
            key, _ = self._working_keys(scratch, "key_check_value", path, twin=False)
            return _encrypt(key, des.ZERO_IV, Mechanism.DES3_ECB)[:KCV_LENGTH]

    # --- device batches -----------------------------------------------------------------

    def wrap_batch(
        self,
        imk: str,
        icc: IccMaster,
        keys: Sequence[BatchRequest],
        *,
        device_point: bytes,
        header: bytes,
        pin_key: bytes | None = None,
    ) -> bytes:
        """The ECW2 envelope of ``emv.crypto.wrap`` built in the token (module docstring):
        the limited-use keys leave it only under AES-KWP."""
        with self._call("wrap_batch", imk) as scratch:
            mk = self._card_key("wrap_batch", imk, icc, "derive")
            wrap.load_point(device_point, "device public key")
            ephemeral, kek, kmac = self._envelope_keys(scratch, device_point)
            mask = None if pin_key is None else self._pin_key(scratch, pin_key)
            payload = wrap.encode_batch(
                [self._sealed_key(scratch, mk, kek, mask, request) for request in keys]
            )
            tag = bytes(kmac.sign(header + payload, mechanism=Mechanism.AES_CMAC))
            return wrap.assemble_envelope(ephemeral, tag, payload)

    def _envelope_keys(self, scratch: _Scratch, device_point: bytes) -> tuple[bytes, _Key, _Key]:
        """E, KEK and KMAC: a fresh P-256 pair, Z = CKM_ECDH1_DERIVE (CKD_NULL) as an
        AES-256 key, then CKM_AES_ECB_ENCRYPT_DATA over ``wrap.envelope_key_data``."""
        parameters = self._session.create_domain_parameters(
            KeyType.EC, {Attribute.EC_PARAMS: P256}, local=True
        )
        public, private = parameters.generate_keypair(
            store=False, private_template={**SECRET, Attribute.DERIVE: True}
        )
        scratch.keep(public)
        shared = scratch.keep(
            cast("_PrivateKey", scratch.keep(private)).derive_key(
                KeyType.AES,
                256,
                capabilities=MechanismFlag.DERIVE,
                mechanism=Mechanism.ECDH1_DERIVE,
                mechanism_param=(KDF.NULL, None, device_point),
                template=SECRET,
            )
        )
        ephemeral = _point(public)
        kek_data, kmac_data = wrap.envelope_key_data(ephemeral, device_point)
        kek, kmac = (
            cast(
                "_Key",
                scratch.keep(
                    cast("_Key", shared).derive_key(
                        KeyType.AES,
                        256,
                        capabilities=capability,
                        mechanism=Mechanism.AES_ECB_ENCRYPT_DATA,
                        mechanism_param=data,
                        template=SECRET,
                    )
                ),
            )
            for data, capability in (
                (kek_data, MechanismFlag.WRAP),
                (kmac_data, MechanismFlag.SIGN),
            )
        )
        return ephemeral, kek, kmac

    def _pin_key(self, scratch: _Scratch, pin_key: bytes) -> _Key:
        """The caller's PIN key as a session AES-256 wrapping key."""
        require_length("pin_key", pin_key, PIN_KEY_LENGTH)
        key = scratch.keep(
            self._session.create_object(
                {
                    Attribute.CLASS: ObjectClass.SECRET_KEY,
                    Attribute.KEY_TYPE: KeyType.AES,
                    Attribute.VALUE: pin_key,
                    Attribute.TOKEN: False,
                    **_only(Attribute.WRAP),
                    **SECRET,
                }
            )
        )
        return cast("_Key", key)

    def _sealed_key(
        self,
        scratch: _Scratch,
        mk: _Key,
        kek: _Key,
        mask: _Key | None,
        request: BatchRequest,
    ) -> wrap.BatchKey:
        """One batch entry whose value is CKM_AES_KEY_WRAP_PAD(KEK, key), the key being
        derived EXTRACTABLE and SENSITIVE, and masked first if it is an SUK-UV."""
        key = scratch.keep(
            _derive_des2(mk, _limited_use_data(request.key), MechanismFlag(0), WRAPPABLE)
        )
        if request.key.kind is BatchKind.SUK_UV:
            if mask is None:
                raise HsmError("wrap_batch: an SUK-UV is only handed out masked: give pin_key")
            key = scratch.keep(self._masked(mask, key))
        return wrap.BatchKey(
            request.key.kind,
            request.key.ident,
            bytes(kek.wrap_key(key, mechanism=Mechanism.AES_KEY_WRAP_PAD)),
            request.max_transactions,
            request.max_amount,
            request.expiry_hour,
        )

    def _masked(self, mask: _Key, key: _Key) -> _Key:
        """``cbp.mask_key`` in the token (CKM_AES_CBC key wrap, zero IV, one block), put
        back as a wrappable session object (the value crosses the host: module docstring)."""
        masked = mask.wrap_key(key, mechanism=Mechanism.AES_CBC, mechanism_param=AES_BLOCK)
        masked_key = self._session.create_object(
            {
                Attribute.CLASS: ObjectClass.SECRET_KEY,
                Attribute.KEY_TYPE: KeyType.GENERIC_SECRET,
                Attribute.VALUE: bytes(masked),
                Attribute.TOKEN: False,
                **_only(),
                **WRAPPABLE,
            }
        )
        return cast("_Key", masked_key)

    # --- RSA ----------------------------------------------------------------------------

    def generate_rsa_key(self, label: str, bits: int, exponent: int) -> RsaPublic:
        """A key pair made by the token (CKM_RSA_PKCS_KEY_PAIR_GEN), both halves labelled."""
        with self._call("generate_rsa_key", label):
            if exponent not in oda.EMV_EXPONENTS:
                raise ValueError(f"exponent {exponent}, expected 3 or 65537")
            if bits % 8 or not 1024 <= bits <= oda.MAX_MODULUS_BYTES * 8:
                raise ValueError(f"modulus {bits} bits, expected 1024..1984, whole bytes")
            self._claim(label)
            public, _ = self._session.generate_keypair(
                KeyType.RSA,
                bits,
                label=self._stored_label(label),
                store=True,
                capabilities=MechanismFlag(0),
                public_template={
                    **self._owned(),
                    Attribute.PUBLIC_EXPONENT: exponent.to_bytes(3, "big").lstrip(b"\x00"),
                    Attribute.VERIFY: True,
                },
                private_template={
                    **self._owned(),
                    **SECRET,
                    Attribute.PRIVATE: True,
                    Attribute.SIGN: True,
                },
            )
            return _rsa_public(label, public)

    def rsa_public_key(self, label: str) -> RsaPublic:
        with self._call("rsa_public_key", label):
            public = self._find(ObjectClass.PUBLIC_KEY, label)
            if not isinstance(public, pkcs11.PublicKey):
                self._rsa("rsa_public_key", label)
                raise HsmError(f"rsa_public_key: key {label!r} has no public half")
            return _rsa_public(label, public)

    def rsa_sign_raw(self, label: str, message: bytes) -> bytes:
        """The RSA private operation of EMV Book 2 Annex A2.1.2 (CKM_RSA_X_509)."""
        with self._call("rsa_sign_raw", label):
            key = self._rsa("rsa_sign_raw", label)
            modulus = bytes(key[Attribute.MODULUS])
            if len(message) != len(modulus) or message >= modulus:
                raise ValueError("the message must have the modulus length and be less than it")
            return bytes(key.sign(message, mechanism=Mechanism.RSA_X_509)).rjust(
                len(modulus), b"\0"
            )

    # --- the vault's data key -----------------------------------------------------------

    def encrypt_data(self, label: str, plaintext: bytes, aad: bytes) -> bytes:
        """CKM_AES_GCM with a random 12-byte nonce, which is prepended."""
        with self._call("encrypt_data", label):
            key, _ = self._secret("encrypt_data", label, AES_KINDS)
            nonce = os.urandom(GCM_NONCE_LENGTH)
            parameters = GCMParams(nonce, aad, GCM_TAG_BITS)
            return nonce + _encrypt(key, plaintext, Mechanism.AES_GCM, parameters)

    def decrypt_data(self, label: str, ciphertext: bytes, aad: bytes) -> bytes:
        with self._call("decrypt_data", label):
            key, _ = self._secret("decrypt_data", label, AES_KINDS)
            failed = HsmError(
                f"decrypt_data with key {label!r}: altered, or sealed under other aad"
            )
            if len(ciphertext) < GCM_NONCE_LENGTH + GCM_TAG_BITS // 8:
                raise failed
            nonce, sealed = ciphertext[:GCM_NONCE_LENGTH], ciphertext[GCM_NONCE_LENGTH:]
            try:
                parameters = GCMParams(nonce, aad, GCM_TAG_BITS)
                opened = key.decrypt(
                    sealed, mechanism=Mechanism.AES_GCM, mechanism_param=parameters
                )
                return cast(bytes, opened)
            except pkcs11.PKCS11Error:
                raise failed from None

    def keyed_digest(self, label: str, data: bytes) -> bytes:
        """CKM_AES_CMAC (16 bytes)."""
        with self._call("keyed_digest", label):
            key, _ = self._secret("keyed_digest", label, AES_KINDS)
            return bytes(key.sign(data, mechanism=Mechanism.AES_CMAC))


def _rsa_public(label: str, public: pkcs11.PublicKey) -> RsaPublic:
    exponent = int.from_bytes(bytes(public[Attribute.PUBLIC_EXPONENT]), "big")
    return RsaPublic(label, bytes(public[Attribute.MODULUS]), exponent)
