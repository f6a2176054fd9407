"""Generated OneRoster 1.1 CSV bundles for the onboarding tests (no real people: every name,
e-mail and birth date is made up, and each is distinctive so a test can prove it was never
stored). Imported by plain name (`from rosters import ...`), like `builders`."""

from __future__ import annotations

import csv
import io
import zipfile
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

ORGS = ("sourcedId", "status", "dateLastModified", "name", "type", "identifier",
        "parentSourcedId")  # fmt: skip
USERS = ("sourcedId", "status", "dateLastModified", "enabledUser", "orgSourcedIds", "role",
         "username", "userIds", "givenName", "familyName", "middleName", "identifier", "email",
         "sms", "phone", "agentSourcedIds", "grades", "password")  # fmt: skip
ENROLLMENTS = ("sourcedId", "status", "dateLastModified", "classSourcedId", "schoolSourcedId",
               "userSourcedId", "role", "primary", "beginDate", "endDate")  # fmt: skip
DEMOGRAPHICS = ("sourcedId", "status", "dateLastModified", "birthDate", "sex")
SCHOOL_YEAR = date(2025, 8, 20)
TRANSFER_DAY = date(2026, 1, 12)  # the mover starts at the second school
MOVER = "stu-guid-mover"


@dataclass
class Bundle:
    """CSV rows of a bundle; `files()` renders them (extra raw lines appended verbatim)."""

    orgs: list[dict[str, str]] = field(default_factory=list)
    users: list[dict[str, str]] = field(default_factory=list)
    enrollments: list[dict[str, str]] = field(default_factory=list)
    demographics: list[dict[str, str]] = field(default_factory=list)
    raw_lines: dict[str, list[str]] = field(default_factory=dict)

    def files(self) -> dict[str, str]:
        out = {}
        tables = (
            ("orgs.csv", ORGS, self.orgs),
            ("users.csv", USERS, self.users),
            ("enrollments.csv", ENROLLMENTS, self.enrollments),
            ("demographics.csv", DEMOGRAPHICS, self.demographics),
        )
        for name, header, rows in tables:
            buffer = io.StringIO()
            writer = csv.DictWriter(buffer, fieldnames=header, lineterminator="\n", restval="")
            writer.writeheader()
            writer.writerows(rows)
            out[name] = buffer.getvalue() + "".join(f"{x}\n" for x in self.raw_lines.get(name, []))
        out["manifest.csv"] = "propertyName,value\nmanifest.version,1.0\noneroster.version,1.1\n"
        return out

    def zip_bytes(self) -> bytes:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, text in self.files().items():
                archive.writestr(name, text)
        return buffer.getvalue()

    def write_zip(self, path: Path) -> Path:
        path.write_bytes(self.zip_bytes())
        return path

    def write_dir(self, path: Path) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        for name, text in self.files().items():
            (path / name).write_text(text)
        return path

    def personal_strings(self) -> set[str]:
        """Every student identifier, name, e-mail and birth date in the bundle."""
        found = set()
        for u in self.users:
            if u["role"] == "student":
                found |= {u[k] for k in ("sourcedId", "givenName", "familyName", "email",
                                         "username", "identifier")}  # fmt: skip
        found |= {d["birthDate"] for d in self.demographics}
        return {s for s in found if s}


def student(n: int, grade: str, orgs: str) -> dict[str, str]:
    return {
        "sourcedId": f"stu-guid-{n:05d}", "enabledUser": "true", "orgSourcedIds": orgs,
        "role": "student", "username": f"zyxstudent{n:05d}", "givenName": f"Quintessa{n:05d}",
        "familyName": f"Vanderplank{n:05d}", "identifier": f"SIS{n:07d}",
        "email": f"quintessa{n:05d}@pupils.example.org", "grades": grade,
    }  # fmt: skip


def generated_bundle(per_school: dict[str, int], teachers: int = 3) -> Bundle:
    """Schools `org-<id>` (school ids `<id>`) with `per_school` students each, grades cycling
    K-12 (plus one pre-K student per school, outside K-12), class enrolments from the start
    of the school year, teachers, demographics with birth dates, and the mover: a grade-7
    student enrolled at the first school all year and at the second from TRANSFER_DAY."""
    bundle = Bundle()
    bundle.orgs.append({"sourcedId": "org-district", "name": "Clayton District",
                        "type": "district", "identifier": "clayton"})  # fmt: skip
    grades = ["KG", *(f"{g:02d}" for g in range(1, 13))]
    n = 0
    for school, count in per_school.items():
        org = school
        bundle.orgs.append(
            {"sourcedId": org, "name": f"{school.upper()} School", "type": "school",
             "identifier": f"code-{school}", "parentSourcedId": "org-district"}
        )  # fmt: skip
        for i in range(count + 1):
            n += 1
            grade = "PK" if i == count else grades[i % len(grades)]
            user = student(n, grade, f"org-district,{org}")
            bundle.users.append(user)
            bundle.demographics.append({"sourcedId": user["sourcedId"],
                                        "birthDate": f"2013-02-{1 + n % 27:02d}"})  # fmt: skip
            for k in range(2):  # two classes each: a student is still counted once
                bundle.enrollments.append(_enrolment(f"e{n}-{k}", org, user["sourcedId"]))
        for t in range(teachers):
            tid = f"tch-{school}-{t}"
            teacher = {"sourcedId": tid, "orgSourcedIds": org, "role": "teacher"}
            bundle.users.append(teacher | {"givenName": "Teach", "familyName": "Er"})
            bundle.enrollments.append(_enrolment(f"t-{tid}", org, tid, role="teacher"))
    first, second = list(per_school)[:2]
    bundle.users.append(student(99999, "07", f"{first},{second}") | {"sourcedId": MOVER})
    bundle.enrollments.append(_enrolment("mover-a", first, MOVER))
    bundle.enrollments.append(_enrolment("mover-b", second, MOVER, begin=TRANSFER_DAY))
    return bundle


def _enrolment(
    sid: str, org: str, user: str, role: str = "student", begin: date = SCHOOL_YEAR
) -> dict[str, str]:
    return {"sourcedId": sid, "classSourcedId": f"class-{sid}", "schoolSourcedId": org,
            "userSourcedId": user, "role": role, "beginDate": begin.isoformat(),
            "endDate": "2026-06-15"}  # fmt: skip
