"""The card side: the emulated phone (applets and wallet) and the cloud behind it.

Card applets, the wallet, the HSM backends and the token server arrive in later
issues. This package may import ``emv``; it never imports ``terminal``.
"""
