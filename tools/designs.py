"""Rewrite src/calmplace/designs.json, the filter designs a build looks up instead of importing
scipy.signal to make them (see calmplace.designs).

Everything that designs a filter is run at each of `designs.RATES`: every built-in soundscape is
opened and read (its recipes and calibration), and the meter's K-weighting and true-peak
interpolator are made. Each design is made afresh with scipy and kept, one entry per line.

    .venv/bin/python tools/designs.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from calmplace import designs


def main() -> int:
    made = designs.recording()
    from calmplace import master
    from calmplace.ambience import BUILTINS, open_bed

    for sr in designs.RATES:
        master.k_weighting(sr)
        for sound in BUILTINS:
            open_bed(sound, sr=sr, seed=0, ambience_dir=Path("/nonexistent")).read(sr)
    master._interpolator()
    lines = [json.dumps(made[k], separators=(",", ":")) for k in sorted(made)]
    designs.TABLE_PATH.write_text("[\n" + ",\n".join(lines) + "\n]\n")
    print(f"{designs.TABLE_PATH}: {len(lines)} designs", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
