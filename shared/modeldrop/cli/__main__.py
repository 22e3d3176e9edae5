"""`python -m modeldrop.cli`."""

import sys

from modeldrop.cli import main

sys.exit(main())
