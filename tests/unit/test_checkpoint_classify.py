from __future__ import annotations

import pytest
import sqlalchemy as sa

from applier.target import classify, errno_of
from shared.envelope import Change, Envelope
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
from shared.lsn import format_lsn
from shared.position import Position

LSN = 0x2000


def env(commit_lsn: int, first: int, n: int = 2, last: bool = False) -> Envelope:
    """A message whose changes are ``first`` .. ``first + n - 1`` of its transaction (their
    WAL records at LSNs 0x100 + i)."""
    return Envelope(
        slot="cdc",
        xid=7,
        commit_lsn=commit_lsn,
        commit_time="2026-01-01 00:00:00+00",
        copy=False,
        chunk=first // 2,
        last=last,
        after=None,
        resumed=False,
        changes=[
            Change("insert", format_lsn(0x100 + i), "s", "t", [], [], [], [], None)
            for i in range(first, first + n)
        ],
    )


def covers(ckpt: Position, e: Envelope) -> bool:
    return e.trimmed(ckpt) is None


def applied(last: int) -> Position:
    """Changes 0 .. ``last`` of the transaction at LSN applied."""
    return Position(LSN, False, (0x100 + last, 0))


# ---------------------------------------------------------------- what a checkpoint covers


def test_completed_transaction_covers_all_its_chunks() -> None:
    ckpt = Position.end_of(LSN)
    for first in (0, 2, 4, 6, 1000):
        assert covers(ckpt, env(LSN, first))
        assert covers(ckpt, env(LSN, first, last=True))


def test_incomplete_transaction_covers_what_is_applied() -> None:
    ckpt = applied(3)  # changes 0..3 applied
    assert covers(ckpt, env(LSN, 0))
    assert covers(ckpt, env(LSN, 2))
    assert not covers(ckpt, env(LSN, 2, last=True))  # applying it completes the transaction
    assert not covers(ckpt, env(LSN, 3))  # change 4 is new
    assert not covers(ckpt, env(LSN, 4))
    assert covers(ckpt, env(LSN, 1, n=2))


def test_earlier_transactions_are_covered() -> None:
    for ckpt in (applied(0), Position.end_of(LSN)):
        assert covers(ckpt, env(LSN - 1, 0))
        assert covers(ckpt, env(LSN - 1, 99, last=True))


def test_later_transactions_are_not_covered() -> None:
    for ckpt in (applied(0), Position.end_of(LSN)):
        assert not covers(ckpt, env(LSN + 1, 0))
        assert not covers(ckpt, env(LSN + 1, 0, last=True))
        assert not covers(ckpt, env(1 << 32, 0))


def test_checkpoint_after_a_message() -> None:
    middle = env(LSN, 2).end
    assert middle == applied(3)
    assert covers(middle, env(LSN, 2))
    assert not covers(middle, env(LSN, 4, last=True))
    done = env(LSN, 4, last=True).end
    assert done == Position.end_of(LSN)
    assert covers(done, env(LSN, 4, last=True))
    assert not covers(done, env(LSN + 1, 0))


def test_applied_part_of_a_message_with_other_boundaries() -> None:
    ckpt = applied(4)
    rest = env(LSN, 3, n=4).trimmed(ckpt)  # changes 3, 4 of 3..6 were applied
    assert rest is not None and len(rest.changes) == 2
    assert env(LSN, 5, n=4).trimmed(ckpt) is not None
    assert len(env(LSN, 5, n=4).changes) == 4
    assert env(LSN + 1, 0, n=4).trimmed(ckpt) is not None
    assert env(LSN, 3, n=4).trimmed(Position.end_of(LSN)) is None


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
