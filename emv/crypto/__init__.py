"""EMV cryptography: spec-named functions, bytes in and bytes out (EMV Book 2)."""
