"""What `tutorledger bench` needs beyond the runtime, checked before the suite is imported.

The suite's HTTP stages need the `bench` extra; `--with-local-services` needs the local test
servers, which live in the source checkout (devtools/services), not in the installed package.
Either missing is one line naming what to install or run, never a traceback.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from tutorledger.domain.errors import TutorLedgerError

BENCH_EXTRA = "pip install 'tutorledger[bench]'"
# Imported by the suite and absent from the runtime's dependencies: the `bench` extra's.
EXTRA_MODULES = ("httpx",)
# The checkout this package runs from, when it is an editable install of one.
CHECKOUT = Path(__file__).resolve().parents[1]


class BenchUnavailable(TutorLedgerError):
    """The benchmark cannot run here: something to install or start first."""

    code = "bench_unavailable"


def require_extra(modules: tuple[str, ...] = EXTRA_MODULES) -> None:
    """Refuse, naming the extra, when a module the suite imports is not installed."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise BenchUnavailable(f"tutorledger bench needs {', '.join(missing)}: {BENCH_EXTRA}")


def local_services_on_path(checkout: Path | None = None) -> None:
    """Make `devtools.services` importable from the source checkout, or refuse in one line."""
    checkout = checkout or CHECKOUT
    if not (checkout / "devtools" / "services" / "__init__.py").is_file():
        raise BenchUnavailable(
            "--with-local-services needs a source checkout (git clone; pip install -e "
            "'.[bench]'; make services); or pass --postgres, --kafka and --clickhouse"
        )
    if str(checkout) not in sys.path:
        sys.path.insert(0, str(checkout))
