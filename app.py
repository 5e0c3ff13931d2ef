"""pypilite's command line: `python app.py` serves with the embedded defaults; `--help` lists the rest."""

import sys

from pypilite.cli import main

if __name__ == "__main__":
    sys.exit(main())
