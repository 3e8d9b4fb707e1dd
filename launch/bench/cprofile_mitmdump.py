"""Run mitmdump under cProfile (the profiler of last resort, when py-spy is not installed).

    python cprofile_mitmdump.py OUT.prof -- <mitmdump arguments>

mitmdump shuts down cleanly on SIGTERM; the profile is written when it returns.
"""

import cProfile
import runpy
import sys
from pathlib import Path


def main() -> None:
    out = sys.argv[1]
    args = sys.argv[sys.argv.index("--") + 1 :]
    script = Path(sys.executable).with_name("mitmdump")  # the venv's console script
    sys.argv = [str(script), *args]
    prof = cProfile.Profile()
    try:
        prof.runcall(runpy.run_path, str(script), run_name="__main__")
    except SystemExit:
        pass
    finally:
        prof.dump_stats(out)


if __name__ == "__main__":
    main()
