"""SqliteStore: schema on open, its version, WAL and foreign keys, transactions, and the
UNIQUE index that makes one approval per ATC a property of the database."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

import pytest

from hce.server import SqliteStore, StoreError
from hce.server.store import (
    AuthorisationRow,
    BatchRow,
    DeviceRow,
    DuplicateApproval,
    IssuedKeyRow,
    TokenRow,
)

AT = datetime(2025, 3, 1, tzinfo=UTC)


def _token(token_id: str = "00" * 8) -> TokenRow:
    return TokenRow(
        token_id, "visa", b"d" * 16, b"s", b"f" * 16, b"s", "00", "2712", "active", 1, AT
    )


def _approval(authorisation_id: str, decision: str = "approved") -> AuthorisationRow:
    return AuthorisationRow(
        authorisation_id, AT, "00" * 8, None, 7, "LUK", 1, 100, b"a" * 8, decision, decision
    )


def test_schema_version_wal_and_foreign_keys(tmp_path):
    SqliteStore(tmp_path / "s.db").close()
    db = sqlite3.connect(tmp_path / "s.db")
    assert db.execute("PRAGMA user_version").fetchone() == (2,)
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    db.execute("PRAGMA user_version = 9")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="schema version 9"):
        SqliteStore(tmp_path / "s.db")


def test_foreign_keys_are_enforced(tmp_path):
    store = SqliteStore(tmp_path / "s.db")
    with pytest.raises(sqlite3.IntegrityError), store.transaction(write=True) as tx:
        tx.add_authorisation(_approval("a1"))
    store.close()


def test_one_approval_per_atc_is_a_unique_index(tmp_path):
    store = SqliteStore(tmp_path / "s.db")
    with store.transaction(write=True) as tx:
        tx.add_token(_token())
        tx.add_authorisation(_approval("a1"))
        tx.add_authorisation(_approval("a2", "declined"))
        with pytest.raises(DuplicateApproval):
            tx.add_authorisation(_approval("a3"))
    with store.transaction() as tx:
        assert tx.token_at_atc(b"d" * 16, 7) == (_token(), True)
        assert tx.token_at_atc(b"d" * 16, 8) == (_token(), False)
        assert tx.token_at_atc(b"x" * 16, 7) is None
    store.close()


def test_key_usage_counts_the_approvals_on_one_issued_key(tmp_path):
    store = SqliteStore(tmp_path / "s.db")
    key = IssuedKeyRow("00" * 8, "dd" * 32, "LUK", 1, "bb" * 8, False, 5, 20_000, 99)
    with store.transaction(write=True) as tx:
        tx.add_token(_token())
        tx.add_device(DeviceRow("dd" * 32, "00" * 8, b"p" * 65, AT))
        tx.add_batch(BatchRow("bb" * 8, "dd" * 32, "00" * 8, "LUK", AT), [key])
        assert tx.key_usage("00" * 8, "LUK", 1) == (key, 0, 0)
        tx.add_authorisation(_approval("a1"))
        tx.add_authorisation(_approval("a2", "declined"))
        assert tx.key_usage("00" * 8, "LUK", 1) == (key, 1, 100)
        assert tx.key_usage("00" * 8, "LUK", 2) is None
        assert tx.key_usage("00" * 8, "SUK", 1) is None
    store.close()


def test_a_failing_operation_leaves_nothing(tmp_path):
    store = SqliteStore(tmp_path / "s.db")
    with pytest.raises(RuntimeError), store.transaction(write=True) as tx:
        tx.add_token(_token())
        raise RuntimeError
    with store.transaction() as tx:
        assert tx.token("00" * 8) is None
    store.close()


def test_atcs_are_allocated_once(tmp_path):
    store = SqliteStore(tmp_path / "s.db")
    with store.transaction(write=True) as tx:
        tx.add_token(_token())
        assert tx.allocate_atcs("00" * 8, 3) == 1
        assert tx.allocate_atcs("00" * 8, 2) == 4
        assert tx.token("00" * 8).next_atc == 6
    store.close()
