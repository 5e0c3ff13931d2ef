"""The whole suite, as the README and CI run it: `python -m tests` runs pytest over everything and, at the same
time, the unit suite once more on PostgreSQL (`pytest -m unit --db=postgresql`). The live tests spend most of
their time waiting on servers and clients, so the second run costs little wall time. Any argument goes to the
first run. The exit status is the first failing run's (pytest's 5, nothing collected, included).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile

SECOND = ["-m", "unit", "--db=postgresql", "-q", "-p", "no:cacheprovider"]


def main() -> int:
    with tempfile.TemporaryFile("w+") as output:
        second = subprocess.Popen([sys.executable, "-m", "pytest", *SECOND], stdout=output,
                                  stderr=subprocess.STDOUT, text=True)
        try:
            first = subprocess.run([sys.executable, "-m", "pytest", *sys.argv[1:]]).returncode
        except BaseException:  # Ctrl-C: stop both
            second.kill()
            raise
        status = second.wait()
        output.seek(0)
        print(f"\n=== the unit suite on PostgreSQL (pytest {' '.join(SECOND)}) ===", flush=True)
        sys.stdout.write(output.read())
    return first or status


if __name__ == "__main__":
    sys.exit(main())
