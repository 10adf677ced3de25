"""make bench-compare BEFORE=REV: the speed limits an issue names, before and after a change, in one run.

    python -m benchmarks.compare BEFORE_DIR [--runs N] [FILE ...]

``BEFORE_DIR`` is a checkout of the code before the change (``make bench-compare`` makes one with
``git worktree`` for ``BEFORE``, default ``origin/main``, and removes it after). Each measurement is
``benchmarks.case`` in a fresh process, run from each checkout so that it imports that checkout's code;
the two sides alternate (before, after, before, ...) so that a slow spell of a shared machine falls on
both. Default files: the 100k-line xlsx and the 500k-line CSV of ``make bench``; 7 runs a side. Prints
medians per side and the two figures the limits are stated in: validate / I/O floor (the floor measured
once per run, from the after checkout: the same file on both sides) and the end-to-end change in percent;
and each side's fastest run, which a slow spell of a shared machine moves least.
"""

import json
import statistics
import subprocess
import sys
from pathlib import Path

from benchmarks.run import ENV, PY, ROOT, _ensure

KEYS = ("read_total", "derive", "validate_total", "write", "end_to_end")


def _case(kind: str, path: Path, checkout: Path) -> dict:
    out = subprocess.run([PY, "-m", "benchmarks.case", kind, str(path)], check=True, capture_output=True,
                         text=True, cwd=checkout, env=ENV)
    return json.loads(out.stdout.strip().splitlines()[-1])


def compare(before: Path, files: list[Path], runs: int) -> dict:
    report = {}
    for path in files:
        sides: dict[str, list[dict]] = {"before": [], "after": []}
        floors = []
        print(f"measuring {path.name}: {runs} runs a side, alternating ...", flush=True)
        for _ in range(runs):
            sides["before"].append(_case("pipeline", path, before))
            sides["after"].append(_case("pipeline", path, ROOT))
            floors.append(_case("floor", path, ROOT)["floor"])
        floor = statistics.median(floors)
        row = {"floor": floor, "findings": {s: r[0]["findings"] for s, r in sides.items()}}
        for side, rs in sides.items():
            row[side] = {k: statistics.median(r[k] for r in rs) for k in KEYS}
            row[side]["validate_share_of_floor"] = row[side]["validate_total"] / floor
            row[side]["fastest"] = {k: min(r[k] for r in rs) for k in ("validate_total", "end_to_end")}
        row["end_to_end_change"] = row["after"]["end_to_end"] / row["before"]["end_to_end"] - 1
        row["fastest_end_to_end_change"] = (row["after"]["fastest"]["end_to_end"]
                                            / row["before"]["fastest"]["end_to_end"] - 1)
        report[path.name] = row
        _print(path.name, row)
    return report


def _print(name: str, row: dict) -> None:
    print(f"  {name}: I/O floor {row['floor']:.3f} s; findings before {row['findings']['before']:,}, after "
          f"{row['findings']['after']:,}")
    for side in ("before", "after"):
        r = row[side]
        print(f"    {side:6s} " + "  ".join(f"{k} {r[k]:.3f}" for k in KEYS)
              + f"  validate/floor {r['validate_share_of_floor']:.1%}  (fastest run: validate "
              f"{r['fastest']['validate_total']:.3f}, end to end {r['fastest']['end_to_end']:.3f})")
    print(f"    end to end {row['end_to_end_change']:+.1%} (medians; fastest runs "
          f"{row['fastest_end_to_end_change']:+.1%})", flush=True)


def main(argv: list[str]) -> None:
    if not argv or argv[0].startswith("-"):
        raise SystemExit(__doc__)
    before = Path(argv[0]).resolve()
    runs, files = 7, []
    rest = iter(argv[1:])
    for arg in rest:
        if arg == "--runs":
            runs = int(next(rest))
        else:
            files.append(Path(arg).resolve())
    if not (before / "benchmarks" / "case.py").exists():
        raise SystemExit(f"{before}: not a claimscrub checkout with benchmarks/case.py")
    files = files or [_ensure(100_000, "xlsx"), _ensure(500_000, "csv")]
    report = compare(before, files, runs)
    (ROOT / "benchmarks" / "compare.json").write_text(json.dumps(report, indent=1))
    print("wrote benchmarks/compare.json")


if __name__ == "__main__":
    main(sys.argv[1:])
