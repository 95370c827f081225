"""The card: an EMV contactless card emulated at the APDU level (DESIGN.md hce/card).

How the parts fit:

* :mod:`hce.card.profile`: a YAML profile, checked (:func:`load_profile`);
* :mod:`hce.card.personalise`: the card image built from it (:func:`personalise`):
  data objects, records, AFL, static data, ICC key and certificates, signed through
  an :class:`IssuerSigner` (:class:`hce.card.issuer.SoftIssuer` in memory, or
  :class:`HsmSigner` over an HSM);
* :mod:`hce.card.keys`: the two key modes, :class:`PlasticKeys` (ICC master keys and
  a persistent counter store) and :class:`HceKeys` (a :class:`hce.wallet.Wallet`);
* :mod:`hce.card.card`: the :class:`Card`, an :class:`emv.link.Link` that does PPSE,
  SELECT and the ISO/IEC 7816-4 status word discipline, and hands the other
  commands to one applet per application;
* :mod:`hce.card.applet`: the applet base shared by brands; :mod:`hce.card.visa` the
  Visa qVSDC applet.

A plastic card::

    issuer = SoftIssuer()
    profile = load_profile("visa_qvsdc_plastic")
    image = personalise(profile, issuer.signer(profile))
    card = Card(image, issuer.plastic_keys(profile, FileCounterStore(path)))

An HCE card: ``Card(personalise(profile, signer), HceKeys(wallet))``.

Plugging in a second brand's applet (e.g. Mastercard M/Chip):

1. an entry ``"mastercard": BrandRules(cryptogram_versions=..., oda_methods=...,
   required=..., plastic_keys=...)`` in the ``BRANDS`` table of
   :mod:`hce.card.profile`: which profiles it accepts;
2. a subclass of :class:`hce.card.applet.Applet` with ``__init__(self, image:
   AppImage, keys: CardKeys)``; it extends ``handlers(self) -> Mapping[int,
   Handler]`` (which the card reads once, when it is made) with its commands
   (``Handler(cla, handle)``, ``handle(command: CommandApdu) -> bytes`` returning
   the response data or raising ``StatusError(sw)``), ``reset(self) -> None`` with
   its transaction state (it sets ``self.processing = True`` once READ RECORD may
   run) and ``data_object(self, tag: int) -> bytes | None`` with what GET DATA serves;
3. an entry ``"mastercard": MastercardApplet`` (an ``AppletFactory``) in the
   ``APPLETS`` table of :mod:`hce.card.card`, or ``Card(image, keys, applets=...)``.

The applet finds its keys by type: ``PlasticKeys.counters`` (read once a command),
``.advance(counters, offline_amount=...)``, ``.common_session_key(r)``, ``.mk_cvc3``;
``HceKeys.take_suk(amount, pin)``, ``.take_luk(amount)``.
"""

from hce.card.applet import Applet, AppletFactory, Handler, StatusError
from hce.card.card import APPLETS, Card
from hce.card.issuer import SoftIssuer
from hce.card.keys import (
    AtcExhausted,
    CardKeys,
    CounterError,
    Counters,
    FileCounterStore,
    HceKeys,
    MemoryCounterStore,
    PlasticKeys,
)
from hce.card.personalise import AppImage, CardImage, HsmSigner, IssuerSigner, personalise
from hce.card.profile import (
    BRANDS,
    BrandRules,
    CardProfile,
    ProfileError,
    load_profile,
    shipped_profiles,
)
from hce.card.show import render_image, show_profile

__all__ = [
    "APPLETS",
    "BRANDS",
    "AppImage",
    "Applet",
    "AppletFactory",
    "AtcExhausted",
    "BrandRules",
    "Card",
    "CardImage",
    "CardKeys",
    "CardProfile",
    "CounterError",
    "Counters",
    "FileCounterStore",
    "Handler",
    "HceKeys",
    "HsmSigner",
    "IssuerSigner",
    "MemoryCounterStore",
    "PlasticKeys",
    "ProfileError",
    "SoftIssuer",
    "StatusError",
    "load_profile",
    "personalise",
    "render_image",
    "shipped_profiles",
    "show_profile",
]
