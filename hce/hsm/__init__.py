"""The `Hsm` seam: keys you can use but not read (see ``interface.py``).

Backends: ``soft`` (pure ``cryptography``, an encrypted key file; the embedded
default) and ``pkcs11`` (python-pkcs11; SoftHSMv2 in tests, any vendor HSM in
production).
"""
