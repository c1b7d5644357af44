from __future__ import annotations

import pytest
import sqlalchemy as sa

from applier.checkpoint import Checkpoint
from applier.target import classify, errno_of
from shared.envelope import Envelope
from shared.errors import (
    CdcError,
    DecodeError,
    RowRejected,
    RowTooLarge,
    SchemaMismatch,
    SetupError,
    TargetConflict,
    TargetUnavailable,
)

LSN = 0x2000


def env(commit_lsn: int, first: int, n: int = 2, last: bool = False) -> Envelope:
    """A message whose changes are ``first`` .. ``first + n - 1`` of its transaction."""
    return Envelope(
        slot="cdc",
        xid=7,
        commit_lsn=commit_lsn,
        commit_time="2026-01-01 00:00:00+00",
        prev_lsn=0,
        resumed=False,
        chunk=first // 2,
        first=first,
        last=last,
        changes=[object()] * n,  # type: ignore[list-item]
    )


# ---------------------------------------------------------------- Checkpoint.covers


def test_completed_transaction_covers_all_its_chunks() -> None:
    ckpt = Checkpoint(LSN, 6, complete=True)
    for first in (0, 2, 4, 6, 1000):
        assert ckpt.covers(env(LSN, first))
        assert ckpt.covers(env(LSN, first, last=True))


def test_incomplete_transaction_covers_what_is_applied() -> None:
    ckpt = Checkpoint(LSN, 4, complete=False)  # changes 0..3 applied
    assert ckpt.covers(env(LSN, 0))
    assert ckpt.covers(env(LSN, 2))
    assert not ckpt.covers(env(LSN, 2, last=True))  # applying it completes the transaction
    assert not ckpt.covers(env(LSN, 3))  # change 4 is new
    assert not ckpt.covers(env(LSN, 4))
    assert ckpt.covers(env(LSN, 1, n=2))


def test_earlier_transactions_are_covered() -> None:
    for ckpt in (Checkpoint(LSN, 0, complete=False), Checkpoint(LSN, 5, complete=True)):
        assert ckpt.covers(env(LSN - 1, 0))
        assert ckpt.covers(env(LSN - 1, 99, last=True))


def test_later_transactions_are_not_covered() -> None:
    for ckpt in (Checkpoint(LSN, 0, complete=False), Checkpoint(LSN, 5, complete=True)):
        assert not ckpt.covers(env(LSN + 1, 0))
        assert not ckpt.covers(env(LSN + 1, 0, last=True))
        assert not ckpt.covers(env(1 << 32, 0))


def test_checkpoint_after_a_message() -> None:
    middle = Checkpoint.after(env(LSN, 2))
    assert middle == Checkpoint(LSN, 4, complete=False)
    assert middle.covers(env(LSN, 2))
    assert not middle.covers(env(LSN, 4, last=True))
    done = Checkpoint.after(env(LSN, 4, last=True))
    assert done == Checkpoint(LSN, 6, complete=True)
    assert done.covers(env(LSN, 4, last=True))
    assert not done.covers(env(LSN + 1, 0))


def test_applied_part_of_a_message_with_other_boundaries() -> None:
    ckpt = Checkpoint(LSN, 5, complete=False)
    assert ckpt.applied_of(env(LSN, 3, n=4)) == 2  # changes 3, 4 of 3..6 were applied
    assert ckpt.applied_of(env(LSN, 5, n=4)) == 0
    assert ckpt.applied_of(env(LSN + 1, 0, n=4)) == 0
    assert Checkpoint(LSN, 5, complete=True).applied_of(env(LSN, 3, n=4)) == 0


# ---------------------------------------------------------------- classify


class FakeDbError(Exception):
    """Like mariadb.Error: an errno attribute and a message."""

    def __init__(self, errno: int, message: str = "fake error") -> None:
        super().__init__(message)
        self.errno = errno


@pytest.mark.parametrize(
    ("errno", "kind"),
    [
        (1213, TargetConflict),  # deadlock
        (1205, TargetConflict),  # lock wait timeout
        (2013, TargetUnavailable),  # lost connection
        (2006, TargetUnavailable),  # server has gone away
        (2002, TargetUnavailable),  # cannot connect
        (1053, TargetUnavailable),  # shutdown in progress
        (1290, TargetUnavailable),  # read-only
        (4031, TargetUnavailable),  # idle client disconnected
        (1045, SetupError),  # access denied
        (1049, SetupError),  # unknown database
        (1142, SetupError),  # command denied
        (1264, RowRejected),  # out of range
        (1406, RowRejected),  # data too long
        (1062, RowRejected),  # duplicate entry
        (1292, RowRejected),  # incorrect value
        (1146, SchemaMismatch),  # table doesn't exist
        (1054, SchemaMismatch),  # unknown column
        (1364, SchemaMismatch),  # field without default
        # what a retry cannot fix: size limits, data errors
        (1153, RowTooLarge),  # packet larger than max_allowed_packet (server)
        (2020, RowTooLarge),  # the same, seen by the client library
        (1118, SchemaMismatch),  # row size too large
        (1071, SchemaMismatch),  # key too long
        (1366, RowRejected),  # incorrect string value
        (3140, RowRejected),  # invalid JSON
        (2036, RowRejected),  # a parameter type the client library cannot send
        # what a retry can fix
        (1047, TargetUnavailable),  # Galera node not ready
        (1021, TargetUnavailable),  # disk full
        (1114, TargetUnavailable),  # table full
        (1040, TargetUnavailable),  # too many connections
        (1927, TargetUnavailable),  # connection killed
        (5014, TargetUnavailable),  # client write error (connection reset)
        (1412, TargetUnavailable),  # table definition changed
    ],
)
def test_classify_by_errno(errno: int, kind: type[CdcError]) -> None:
    fault = classify(FakeDbError(errno, f"error {errno}\nsecond line"), "maria:3306/db")
    assert type(fault) is kind
    assert "second line" not in str(fault)


def test_classify_looks_through_a_wrapper() -> None:
    wrapped = sa.exc.OperationalError("INSERT ...", None, FakeDbError(1213, "Deadlock found"))
    assert isinstance(classify(wrapped, "here"), TargetConflict)
    integrity = sa.exc.IntegrityError("INSERT ...", None, FakeDbError(1146, "no table"))
    assert isinstance(classify(integrity, "here"), SchemaMismatch)


def test_classify_names_where_and_first_line() -> None:
    fault = classify(FakeDbError(2013, "Lost connection\ndetails"), "maria:3306/db")
    assert "maria:3306/db" in str(fault)
    assert "Lost connection" in str(fault)
    setup = classify(FakeDbError(1045, "Access denied"), "maria:3306/db")
    assert "maria:3306/db" in str(setup)


def test_pipeline_errors_pass_through() -> None:
    error = DecodeError("bad message")
    assert classify(error, "here") is error


def test_unknown_errno_in_an_operational_error_is_unavailable() -> None:
    wrapped = sa.exc.OperationalError("SELECT 1", None, FakeDbError(9999))
    assert isinstance(classify(wrapped, "here"), TargetUnavailable)
    for client in (2014, 2027, 0):  # the client library's own: connection and protocol
        wrapped = sa.exc.OperationalError("SELECT 1", None, FakeDbError(client))
        assert isinstance(classify(wrapped, "here"), TargetUnavailable)


def test_an_unknown_server_error_is_not_retried_whatever_its_class() -> None:
    # The server answered: the same statement gets the same answer. (The batch is applied
    # again message by message, so one passing fault parks nothing.)
    for code in (1105, 1299, 3999, 4199):
        wrapped = sa.exc.OperationalError("INSERT ...", None, FakeDbError(code, "no"))
        assert isinstance(classify(wrapped, "here"), RowRejected)


def test_a_packet_too_large_is_permanent_even_on_a_dropped_connection() -> None:
    wrapped = sa.exc.OperationalError(
        "INSERT ...", None, FakeDbError(1153, "Got a packet bigger than 'max_allowed_packet'"),
        connection_invalidated=True,
    )  # fmt: skip
    fault = classify(wrapped, "here")
    assert isinstance(fault, RowTooLarge)
    assert "raise max_allowed_packet" in str(fault)


def test_unknown_errno_in_a_dbapi_error_is_a_rejected_row() -> None:
    wrapped = sa.exc.DataError("INSERT ...", None, FakeDbError(9999))
    assert isinstance(classify(wrapped, "here"), RowRejected)


def test_invalidated_connection_is_unavailable() -> None:
    wrapped = sa.exc.DBAPIError("SELECT 1", None, FakeDbError(9999), connection_invalidated=True)
    assert isinstance(classify(wrapped, "here"), TargetUnavailable)


def test_a_fault_of_the_message_itself_is_not_retried() -> None:
    # e.g. the driver refusing a value (SystemError for an integer too large for it): the same
    # every time, so retrying would stall the pipeline for ever.
    for exc in (RuntimeError("odd"), SystemError("int too large"), KeyError("id")):
        fault = classify(exc, "here")
        assert isinstance(fault, RowRejected)
        assert type(exc).__name__ in str(fault)


def test_socket_errors_are_transient() -> None:
    assert isinstance(classify(ConnectionResetError(104, "reset"), "here"), TargetUnavailable)


def test_errno_of() -> None:
    assert errno_of(FakeDbError(1213)) == 1213
    assert errno_of(sa.exc.OperationalError("x", None, FakeDbError(2006))) == 2006
    assert errno_of(Exception(1146, "from args")) == 1146
    assert errno_of(Exception("no number")) is None
    assert errno_of(RuntimeError()) is None
