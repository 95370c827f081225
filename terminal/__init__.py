"""The POS side: Entry Point, contactless kernels, ODA, risk, host client, readers.

The kernels arrive in a later issue. This package may import ``emv``; it never
imports ``hce``: it knows a card only through a ``emv.link.Link``.
"""
