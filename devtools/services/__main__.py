"""``python -m devtools.services install|check|run``."""

import sys

from .servers import main

sys.exit(main())
