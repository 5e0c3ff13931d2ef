"""`python -m pypilite`: the `pypilite` command."""

import sys

from pypilite.cli import main

sys.exit(main())
