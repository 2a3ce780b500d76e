"""``python -m smart_community_bridge``."""

import sys

from .cli import main

sys.exit(main())
