"""``python -m tutorledger.services install|check|run``."""

import sys

from .servers import main

sys.exit(main())
