"""``python -m smart_community_grid``."""

import sys

from .cli import main

sys.exit(main())
