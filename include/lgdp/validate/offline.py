"""Validate a local file exactly as collection would, in a scratch database: ``lgdp check``.

A council officer (or the platform team) wants to know, before sending a file, what the council
would be told about it. The only way to give *the same* issues is to run the same code: the file
is parsed by ``lgdp.parse.parse_submission``, archived, recorded and loaded into its version's
staging partition by ``lgdp.ingest``, and validated by ``lgdp.collect.process.validate_version``
(the spec's row-level checks, cross-checked against the Soda Core v4 contract's counts), in the
same order collection follows: a file with structural errors is rejected before the spec's checks
run, so it gets only the parser's issues, as the council would.

The database is a scratch one, thrown away afterwards, so nothing touches a real ledger:

* ``LGDP_DATABASE_URL`` set: a new database ``lgdp_check_<random>`` on that server, dropped after
  (the configured database itself is only used to create and drop it);
* otherwise: an embedded PostgreSQL (``lgdp.devdb.start_embedded``) in a temporary folder, stopped
  and deleted after. Starting it (initdb included) is most of the time of a small check, a few
  seconds.

What offline cannot reproduce: plausibility against the council's previous accepted period (there
is none in a scratch database), which collection adds as queries.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import secrets
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from lgdp.issues import Issue
from lgdp.parse import Limits, ParseResult
from lgdp.specs.load import LoadedSpec

ENV = "LGDP_DATABASE_URL"
log = logging.getLogger(__name__)


class OfflineCheckError(RuntimeError):
    """The scratch database or the validation could not run (not a verdict on the file)."""


@dataclass(frozen=True)
class OfflineResult:
    """What the council would receive for the file, and how far the check went."""

    parse: ParseResult
    issues: list[Issue] = field(default_factory=list)
    validated: bool = False  # the spec's checks ran on the loaded rows
    council: str | None = None  # the council the rows were staged for
    period: str | None = None

    @property
    def errors(self) -> int:
        return sum(i.severity == "error" for i in self.issues)

    @property
    def queries(self) -> int:
        return sum(i.severity == "query" for i in self.issues)

    @property
    def outcome(self) -> str | None:
        """accepted | rejected | queries, as collection would decide; None when only parsed (and clean so far).

        Offline no query carries an explanation yet (they come back in the feedback workbook).
        """
        from lgdp.collect.process import decide

        if self.validated:
            return decide(self.issues, True)
        if not self.parse.readable or self.parse.table is None or self.errors:
            return "rejected"  # collection rejects the file before the spec's checks
        return None  # parse only: not decided


def default_period(loaded: LoadedSpec, now: dt.datetime | None = None) -> str:
    """The period a council is most likely sending: the latest one whose collection has opened."""
    from lgdp.periods import period_opening_at

    return period_opening_at(loaded.spec.collection, now or dt.datetime.now(dt.timezone.utc)).label


def staging_council(loaded: LoadedSpec, council: str | None) -> str:
    """The council the rows are staged for: the one given, else the spec's first provider.

    Only the parser compares the file with the submitting council (``ID-001``); the spec's checks
    do not depend on which council it is, so any provider gives the same issues.
    """
    codes = [c.code for c in loaded.providers]
    if council is None:
        if not codes:
            raise ValueError(f"return {loaded.id!r} has no provider councils to check a file for")
        return codes[0]
    if council not in codes:
        shown = ", ".join(codes[:6]) + (", …" if len(codes) > 6 else "")
        raise ValueError(f"{council} is not a council that sends {loaded.id!r} (its councils: {shown})")
    return council


@contextlib.contextmanager
def scratch_database() -> Iterator[str]:
    """A new, migrated ledger database for one check; dropped (or its server deleted) afterwards."""
    from lgdp.devdb import create_database, embedded_url, start_embedded
    from lgdp.ledger import db

    configured = os.environ.get(ENV)
    tmp: Path | None = None
    server = None
    name = f"lgdp_check_{secrets.token_hex(6)}"
    url: str | None = None
    try:
        try:
            if configured:
                server_url = db.database_url(configured)
                url = create_database(server_url, name)
            else:
                tmp = Path(tempfile.mkdtemp(prefix="lgdp-check-"))
                with warnings.catch_warnings():  # platformdirs: "XDG_RUNTIME_DIR is not set" is not the user's concern
                    warnings.filterwarnings("ignore", module="platformdirs")
                    server = start_embedded(tmp / "pgdata", cleanup="delete")
                # The whole server is thrown away: its own maintenance database will do, and
                # nothing needs to survive a crash (no fsync, no full-page writes).
                url = embedded_url(server, "postgres")
                _scratch_settings(url)
            db.upgrade(url=url)
        except Exception as exc:  # noqa: BLE001 - whatever stops the database, say so plainly
            if configured:
                hint = " (unset LGDP_DATABASE_URL to use an embedded PostgreSQL instead, or use --parse-only)"
                where = "on the server of LGDP_DATABASE_URL"
            else:
                hint, where = " (or use --parse-only)", "in an embedded PostgreSQL"
            raise OfflineCheckError(f"could not prepare a scratch database {where}: {exc}{hint}") from exc
        yield url
    finally:
        if url is not None:
            db.engine(url).dispose()
        if configured and url is not None:
            _drop_database(db.database_url(configured), name)
        if server is not None:
            server.cleanup()  # type: ignore[attr-defined]
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _scratch_settings(url: str) -> None:
    from sqlalchemy import create_engine, text

    eng = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with eng.connect() as conn:
            for setting in ("fsync", "synchronous_commit", "full_page_writes"):
                conn.execute(text(f"ALTER SYSTEM SET {setting} = off"))
            conn.execute(text("SELECT pg_reload_conf()"))
    finally:
        eng.dispose()


def _drop_database(server_url: str, name: str) -> None:
    """Drop the scratch database; a failure is reported, not raised (the check's result stands)."""
    from sqlalchemy import create_engine, text

    eng = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with eng.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    except Exception as exc:  # noqa: BLE001
        log.warning("could not drop the scratch database %s (drop it by hand): %s", name, exc)
    finally:
        eng.dispose()


@contextlib.contextmanager
def _ledger_at(url: str) -> Iterator[None]:
    """``LGDP_DATABASE_URL`` pointing at the scratch database while collection's code runs."""
    before = os.environ.get(ENV)
    os.environ[ENV] = url
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = before


def check_file(
    loaded: LoadedSpec,
    filename: str,
    data: bytes,
    council: str | None = None,
    period: str | None = None,
    *,
    parse_only: bool = False,
    limits: Limits | None = None,
) -> OfflineResult:
    """Everything collection would tell the council about ``data``, in the same order.

    Parses the bytes; unless ``parse_only``, the file is unreadable or the parser found structural
    errors (which reject a file before the spec's checks, as in collection), loads the rows into
    a scratch database and runs ``validate_version`` on them. Raises ``ValueError`` for a period
    label that is not one of the return's or a council that does not send it (before anything
    runs), ``OfflineCheckError`` when the scratch database or the validation cannot run.
    """
    from lgdp.parse import parse_submission
    from lgdp.periods import period_from_label

    label = period or default_period(loaded)
    period_from_label(loaded.spec.collection, label)  # ValueError with a clear message
    staged_for = staging_council(loaded, council)
    kwargs = {"limits": limits} if limits is not None else {}
    result = parse_submission(loaded, filename, data, council_code=council, **kwargs)
    issues = list(result.issues)
    structural_errors = any(i.severity == "error" for i in issues)
    if parse_only or result.table is None or structural_errors:
        return OfflineResult(result, issues, False, staged_for, label)
    try:
        with scratch_database() as url, _ledger_at(url):
            issues += _validate(loaded, filename, data, result, staged_for, label)
    except OfflineCheckError:
        raise
    except Exception as exc:  # noqa: BLE001 - not a verdict on the file: the check could not run
        raise OfflineCheckError(f"{type(exc).__name__}: {exc}") from exc
    return OfflineResult(result, issues, True, staged_for, label)


def _validate(
    loaded: LoadedSpec, filename: str, data: bytes, result: ParseResult, council: str, label: str
) -> list[Issue]:
    """Collection's steps 1, 3 and 4 (``process_file``) on a parsed file, in the scratch ledger."""
    from lgdp.collect.process import storable, validate_version
    from lgdp.ingest import archive_file, expected_submission, record_version
    from lgdp.ingest.load import load_result
    from lgdp.ledger import db
    from lgdp.ledger.register import open_period
    from lgdp.periods import period_from_label
    from lgdp.validate.contract import ValidationRuntimeError

    with db.session() as s, s.begin():
        open_period(s, loaded, period_from_label(loaded.spec.collection, label))
        sub = expected_submission(s, loaded.id, label, council)
        sha = archive_file(s, data)
        version_id, _ = record_version(
            s, sub.id, sha256=sha, filename=storable(filename), source_path=storable(filename),
            source_item_id="lgdp-check", source_etag=sha, uploaded_by=None, uploaded_at=None,
        )
        load_result(s, loaded, version_id, council, label, result)  # every table of the return
    try:
        return validate_version(loaded, label, council, version_id)
    except ValidationRuntimeError as exc:
        raise OfflineCheckError(str(exc)) from exc


__all__ = ["OfflineCheckError", "OfflineResult", "check_file", "default_period", "scratch_database", "staging_council"]
