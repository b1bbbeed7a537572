"""`python -m rootless`."""

import sys

from rootless.cli.main import main

sys.exit(main())
