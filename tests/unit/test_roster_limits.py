"""Rosters are read as streams with budgets: a zip bomb is refused with memory measured, a
file named twice in a zip is refused, and a problem never quotes the cell it is about."""

from __future__ import annotations

import io
import tracemalloc
import uuid
import warnings
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from builders import write_keys
from fastapi.testclient import TestClient
from rosters import generated_bundle

from tutorledger.api.app import create_app
from tutorledger.domain.roster import InvalidRoster, RosterTooLarge
from tutorledger.infra.importers.oneroster import Limits, parse_roster, read_bundle
from tutorledger.infra.settings import Settings

MiB = 1024 * 1024
BOMB_BYTES = 40 * MiB  # what the attack review sent: 40 MB of rows in a ~100 KB zip
MEMORY_BOUND = 64 * MiB  # generous: the streamed parse itself needs a few MiB
ORGS = "sourcedId,name,type\norg-1,One School,school\n"
USERS_HEADER = "sourcedId,role,grades,orgSourcedIds\n"


def bomb(
    row: bytes | Callable[[int], bytes], total: int = BOMB_BYTES, header: str = USERS_HEADER
) -> bytes:
    """A zip whose users.csv unpacks to `total` bytes of rows (`row`, or `row(i)` for the
    i-th), written a MiB at a time so the test itself never holds the unpacked file."""
    out = io.BytesIO()
    make = row if callable(row) else (lambda _: row)
    written, i = 0, 0
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("orgs.csv", ORGS)
        with archive.open("users.csv", "w") as users:
            users.write(header.encode())
            while written < total:
                chunk = []
                for i in range(i, i + 65536):  # noqa: B020
                    chunk.append(make(i))
                i += 1
                data = b"".join(chunk)[: total - written]
                users.write(data)
                written += len(data)
    return out.getvalue()


def peak_while(run: Callable[[], Any]) -> tuple[BaseException | None, int]:
    """What `run` raised, and the peak of memory allocated while it ran (tracemalloc)."""
    tracemalloc.start()
    try:
        run()
        raised: BaseException | None = None
    except (InvalidRoster, RosterTooLarge) as exc:
        raised = exc
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return raised, peak


def parse(source: bytes, limits: Limits = Limits()) -> None:
    with read_bundle(source, limits) as bundle:
        parse_roster(bundle, limits=limits)


def test_a_zip_bomb_of_bad_rows_is_refused_in_bounded_memory() -> None:
    source = bomb(b"stu-x,student,ZZ,org-1,extra\n")  # a field too many, every row
    assert len(source) < 1 * MiB
    raised, peak = peak_while(lambda: parse(source))
    assert isinstance(raised, InvalidRoster), raised
    assert len(raised.details) == 1000 and "at least 1000" in raised.message
    assert peak < MEMORY_BOUND, f"peak {peak / MiB:.1f} MiB"
    print(f"bad-row bomb: {len(source)} B zip, peak {peak / MiB:.1f} MiB")  # noqa: T201


def test_a_zip_bomb_of_good_rows_is_refused_past_the_row_budget_in_bounded_memory() -> None:
    # Well-formed rows, all distinct: 8 MiB is already 350,000 of them.
    source = bomb(lambda i: b"tch-%08d,teacher,,org-1\n" % i, total=8 * MiB)
    raised, peak = peak_while(lambda: parse(source, Limits(max_rows=100_000)))
    assert isinstance(raised, RosterTooLarge) and raised.status == 413, raised
    assert peak < MEMORY_BOUND, f"peak {peak / MiB:.1f} MiB"


def test_a_bundle_over_the_byte_budget_is_refused_whatever_its_sizes_claim() -> None:
    source = bomb(b"stu-x,student,ZZ,org-1\n")
    declared = Limits(max_bytes=10 * MiB)
    with pytest.raises(RosterTooLarge, match="unpacked"):  # the zip's own sizes say so
        parse(source, declared)
    # Files with no declared size (a directory, a stream) are counted as they are read.
    users = USERS_HEADER.encode() + b"".join(b"t%07d,teacher,,org-1\n" % i for i in range(60_000))
    files = {"orgs.csv": ORGS.encode(), "users.csv": users}
    with pytest.raises(RosterTooLarge, match="over 1048576 bytes"):
        parse_roster(files, limits=Limits(max_bytes=MiB))


def test_one_endless_line_is_refused_without_reading_it_whole() -> None:
    source = bomb(b"x" * 4096, header="")  # 40 MB without a line break
    raised, peak = peak_while(lambda: parse(source))
    assert isinstance(raised, InvalidRoster), raised
    assert raised.details == [{"file": "users.csv", "line": 1,
                               "problem": "line longer than 1048576 bytes"}]  # fmt: skip
    assert peak < MEMORY_BOUND, f"peak {peak / MiB:.1f} MiB"


@pytest.mark.parametrize("second", ["a/orgs.csv", "orgs.csv"])
def test_a_file_named_twice_in_the_zip_is_refused(second: str) -> None:
    out = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(out, "w") as archive:
        warnings.simplefilter("ignore")  # zipfile warns of the duplicate: that is the point
        archive.writestr("orgs.csv", ORGS)
        archive.writestr(second, "sourcedId,name,type\norg-2,Other School,school\n")
        archive.writestr("users.csv", USERS_HEADER)
    with pytest.raises(InvalidRoster) as caught:
        parse(out.getvalue())
    assert caught.value.details == [
        {"file": "orgs.csv", "line": 0, "problem": "the zip holds 2 files named orgs.csv: keep one"}
    ]


def test_problems_name_file_line_and_column_never_the_cell() -> None:
    cell = "STU-4471 JANE DOE"
    users = USERS_HEADER + f"stu-1,student,{cell},org-1\nstu-2,student,07,{cell}\n"
    with pytest.raises(InvalidRoster) as caught:
        parse_roster({"orgs.csv": ORGS.encode(), "users.csv": users.encode()})
    problems = caught.value.details
    assert [(p["line"], p["column"]) for p in problems] == [(2, "grades"), (3, "orgSourcedIds")]
    text = repr(problems) + caught.value.message
    assert "JANE" not in text and "4471" not in text


def test_a_damaged_member_is_a_problem_not_a_crash() -> None:
    source = bytearray(generated_bundle({"a": 30, "b": 30}).zip_bytes())
    at = source.find(b"users.csv") + 200  # inside the member's compressed data
    source[at : at + 40] = bytes(40)
    with pytest.raises(InvalidRoster) as caught:
        parse(bytes(source))
    assert {"file": "users.csv", "line": 1, "problem": "damaged in the zip; cannot be read"} in (
        caught.value.details
    )


@pytest.fixture
def admin_client(tmp_path: Path, chdb_dir: Path) -> Iterator[TestClient]:
    key = "roster-admin-key-" + "0" * 16
    settings = Settings(
        event_store=f"sqlite:///{tmp_path}/l.db",
        clickhouse=f"chdb://{chdb_dir}?database=t_{uuid.uuid4().hex}",
        api_keys_file=write_keys(
            tmp_path / "k.json", [{"key": key, "role": "admin", "districts": ["*"]}]
        ),  # fmt: skip
        var_dir=tmp_path / "var",
        roster_max_rows=50,
    )
    with TestClient(create_app(settings)) as client:
        client.headers["Authorization"] = f"Bearer {key}"
        yield client


def test_the_endpoint_answers_413_past_the_row_budget_and_records_nothing(
    admin_client: TestClient,
) -> None:
    response = admin_client.post(
        "/v1/admin/roster/d1", params={"as_of": "2026-01-05"},
        content=generated_bundle({"a": 30, "b": 30}).zip_bytes(),
        headers={"Content-Type": "application/zip"},
    )  # fmt: skip
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "roster_too_large"
    schools = admin_client.get("/v1/schools", params={"district_id": "d1"}).json()
    assert schools["schools"] == []
