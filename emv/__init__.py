"""The EMV language, pure: bytes in, values out.

Nothing in this package performs I/O, reads a clock or keeps global state;
``hce``, ``terminal`` and ``scenarios`` build on it and it imports none of them.
"""
