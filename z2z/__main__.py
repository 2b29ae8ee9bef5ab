"""`python -m z2z` = the `z2z` command."""

import sys

from z2z.app.cli import main

sys.exit(main())
