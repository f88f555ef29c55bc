"""Authenticated encryption (AES-256-GCM), keyed BLAKE3 ids and password-wrapped master keys."""

from __future__ import annotations

from cbr_agent.crypto.aead import NONCE_SIZE, OVERHEAD, TAG_SIZE, AuthenticationFailed, Sealer
from cbr_agent.crypto.keys import (
    DEFAULT_KDF,
    TEST_KDF_ENV,
    KdfParams,
    KeyFileDamaged,
    MasterKey,
    default_kdf_params,
    make_key_file,
    open_key_file,
    verify_key_file,
)

__all__ = [
    "DEFAULT_KDF",
    "NONCE_SIZE",
    "OVERHEAD",
    "TAG_SIZE",
    "TEST_KDF_ENV",
    "AuthenticationFailed",
    "KdfParams",
    "KeyFileDamaged",
    "MasterKey",
    "Sealer",
    "default_kdf_params",
    "make_key_file",
    "open_key_file",
    "verify_key_file",
]
