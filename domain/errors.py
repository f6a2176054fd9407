"""Typed errors; each carries the machine code the contract publishes."""

from __future__ import annotations

from typing import Any


class TutorLedgerError(Exception):
    """Root of every error we raise on purpose; `code` is the contract's machine code."""

    code = "error"
    status = 400

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details is not None:
            body["details"] = self.details
        return body


class Rejection(TutorLedgerError):
    """An event that cannot be recorded; it changes nothing."""

    status = 422


class InvalidEvent(Rejection):
    code = "invalid_event"


class UnknownSession(Rejection):
    code = "unknown_session"


class InvalidTransition(Rejection):
    code = "invalid_transition"


class TimestampRegression(Rejection):
    code = "timestamp_regression"


class AlreadyRecorded(Rejection):
    code = "already_recorded"


class EventIdConflict(Rejection):
    """The same event_id was already stored with a different body."""

    code = "event_id_conflict"


class InvalidRequest(TutorLedgerError):
    code = "invalid_request"
    status = 422


class Unauthorized(TutorLedgerError):
    code = "unauthorized"
    status = 401


class Forbidden(TutorLedgerError):
    code = "forbidden"
    status = 403


class NotFound(TutorLedgerError):
    code = "not_found"
    status = 404


class Unavailable(TutorLedgerError):
    """A dependency (store, stream, projections) cannot be reached right now."""

    code = "unavailable"
    status = 503


class ProjectionsInUse(Unavailable):
    """The embedded projections' data dir is held by another process (a running `serve`):
    chdb lets one process open it."""

    code = "projections_in_use"


class ReservedCohortId(TutorLedgerError):
    """Cohort ids starting 'roster.' name the roster's student groups (import-groups): a
    cohort of that id would be taken for a group."""

    code = "reserved_cohort_id"
    status = 409


class RebuildInProgress(TutorLedgerError):
    """Projections are being rebuilt already; one rebuild at a time."""

    code = "rebuild_in_progress"
    status = 409


class StudentErased(Rejection):
    """The session's student was erased: nothing more is stored for them."""

    code = "student_erased"


class UnmigratedLedger(TutorLedgerError):
    """The ledger holds events in the plaintext format of earlier versions."""

    code = "unmigrated_ledger"
    status = 503


class PurposeRequired(TutorLedgerError):
    """A read of a student's personal data must state why (X-Purpose header)."""

    code = "purpose_required"
    status = 422


class MigrationError(TutorLedgerError):
    """`migrate-ledger` cannot (or must not) run on the stores it was given; nothing written."""

    code = "migration_error"
    status = 409


class SourceSealed(MigrationError):
    """The source ledger already holds sealed events (or a student key table in use)."""

    code = "source_already_sealed"


class SourceEmpty(MigrationError):
    """The source holds no ledger events (wrong URL, or nothing to migrate)."""

    code = "source_empty"


class SourceChainBroken(MigrationError):
    """The old chain does not verify: migrating it would vouch for altered history."""

    code = "source_chain_broken"


class TargetNotEmpty(MigrationError):
    """The target already holds a ledger that is not an unfinished migration of this source."""

    code = "target_not_empty"


class MigrationRejected(MigrationError):
    """An old event was refused by today's write path (the migration stops before it)."""

    code = "migration_rejected"


class MigrationIncomplete(TutorLedgerError):
    """The store is a target `migrate-ledger` has not finished filling: not to be served."""

    code = "migration_incomplete"
    status = 503


class RangeTooLong(InvalidRequest):
    """A date range longer than the server answers (its cost grows with the range)."""

    code = "range_too_long"


class TooManyRequests(TutorLedgerError):
    """This key already has as many figure requests running as it may; retry shortly."""

    code = "too_many_requests"
    status = 429


class ServerBusy(TutorLedgerError):
    """Every figure slot of the server is taken; retry shortly."""

    code = "server_busy"
    status = 503


class QueryTimeout(TutorLedgerError):
    """A figure took longer than the server's per-request query budget; narrow it or retry."""

    code = "query_timeout"
    status = 503


class ProjectorStalled(Unavailable):
    """An assigned partition stays behind its end offset and yields nothing: the projector
    exits so its supervisor restarts it (a fresh connection and a new group member)."""

    code = "projector_stalled"
