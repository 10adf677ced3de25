"""make bench: synthetic exports of 10k, 100k and 500k lines (xlsx and CSV), phases, floor, ratios.

Every measurement runs in a fresh process (clean peak RSS); medians of 3 runs; results are written
to benchmarks/RESULTS.md with the machine, versions and date. Options: --quick (10k and 100k only),
--no-million, --no-server; --only-prefect, --only-partitions, --only-adhoc re-measure those sections
into the last results.
"""

import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "benchmarks" / "data"
PY = sys.executable
CLI = str(Path(sys.executable).with_name("claimscrub"))
RUNS = 3
ENV = dict(os.environ, PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1")


def _data_dir() -> Path:
    """Generated files are kept per version of the generator (pipeline/sample.py), so a changed
    generator never leaves stale files behind."""
    import hashlib

    stamp = hashlib.sha256((ROOT / "pipeline" / "sample.py").read_bytes()).hexdigest()[:12]
    folder = DATA / stamp
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _ensure(lines: int, ext: str) -> Path:
    path = _data_dir() / f"claims_{lines // 1000}k.{ext}"
    if not path.exists():
        t0 = time.perf_counter()
        subprocess.run([CLI, "sample", "--lines", str(lines), str(path)], check=True, env=ENV,
                       stdout=subprocess.DEVNULL)
        print(f"  generated {path.name} in {time.perf_counter() - t0:.1f}s", flush=True)
    return path


def _case(kind: str, path: Path) -> dict:
    out = subprocess.run([PY, "-m", "benchmarks.case", kind, str(path)], check=True, capture_output=True,
                         text=True, cwd=ROOT, env=ENV)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _median(runs: list[dict]) -> dict:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def _wall(cmd: list[str], env=None) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=False, env=env or ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    return time.perf_counter() - t0


def measure(path: Path, runs: int = RUNS, cli_runs: int = RUNS) -> dict:
    pipe = _median([_case("pipeline", path) for _ in range(runs)])
    flo = _median([_case("floor", path) for _ in range(runs)])
    out = Path(tempfile.mkdtemp(prefix="bench-"))
    cli = statistics.median(_wall([CLI, "scrub", str(path), "--out", str(out), "--as-of", "2024-06-30"])
                            for _ in range(cli_runs))
    shutil.rmtree(out, ignore_errors=True)
    res = {**pipe, **flo, "cli_wall": cli}
    res["read_beyond_floor"] = res["read_total"] - res["floor_read"]  # below 0 when the split read beats it
    res["ratio"] = res["end_to_end"] / res["floor"]
    res["ratio_cli"] = cli / res["floor"]
    res["lines_per_s"] = res["lines"] / res["end_to_end"]
    res["us_per_line"] = 1e6 * res["end_to_end"] / res["lines"]
    res["validate_share_of_floor"] = res["validate_total"] / res["floor"]
    return res


def prefect_overhead(path: Path) -> dict:
    """Nightly flow on the ephemeral API (warm PREFECT_HOME, alternating runs): empty inbox = fixed
    overhead, one file = overhead + per-file work; and an ad hoc ``scrub --record``."""
    results = {"nightly_empty": [], "nightly_one_file": [], "record_adhoc": []}
    home = tempfile.mkdtemp(prefix="bench-prefect-")
    env = dict(ENV, PREFECT_HOME=home)
    with tempfile.TemporaryDirectory() as tmp:
        _wall([CLI, "nightly", "--root", str(Path(tmp) / "warm"), "--settle-seconds", "0"], env)  # first-run setup
        for i in range(RUNS):
            results["nightly_empty"].append(_wall([CLI, "nightly", "--root", str(Path(tmp) / f"a{i}"),
                                                   "--settle-seconds", "0", "--as-of", "2024-06-30"], env))
            (Path(tmp) / f"b{i}" / "inbox").mkdir(parents=True)
            shutil.copy(path, Path(tmp) / f"b{i}" / "inbox" / path.name)
            results["nightly_one_file"].append(_wall([CLI, "nightly", "--root", str(Path(tmp) / f"b{i}"),
                                                      "--settle-seconds", "0", "--as-of", "2024-06-30"], env))
            results["record_adhoc"].append(_wall([CLI, "scrub", str(path), "--out", tmp, "--record",
                                                  "--as-of", "2024-06-30"], env))
    shutil.rmtree(home, ignore_errors=True)
    return {k: statistics.median(v) for k, v in results.items()}


def dask_scaling(path: Path, files: int = 4) -> dict:
    """Nightly flow over ``files`` copies of one export: default runner, Dask with 1 and 2 workers."""
    home = tempfile.mkdtemp(prefix="bench-prefect-")
    env = dict(ENV, PREFECT_HOME=home)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        _wall([CLI, "nightly", "--root", str(Path(tmp) / "warm"), "--settle-seconds", "0"], env)
        for label, extra in (("default", []), ("dask_1_worker", ["--runner", "dask", "--dask-workers", "1"]),
                             ("dask_2_workers", ["--runner", "dask", "--dask-workers", "2"])):
            root = Path(tmp) / label
            (root / "inbox").mkdir(parents=True)
            for k in range(files):  # distinct bytes per copy, or the ledger would call them duplicates
                (root / "inbox" / f"part{k}{path.suffix}").write_bytes(path.read_bytes() + b"\n" * (k + 1))
            out[label] = _wall([CLI, "nightly", "--root", str(root), "--settle-seconds", "0",
                                "--as-of", "2024-06-30", *extra], env)
    shutil.rmtree(home, ignore_errors=True)
    return out


def dask_partitions(path: Path) -> dict:
    """One large file in one night: the default runner (one piece) vs Dask on 2 workers with the file
    validated in 2 and 4 partitions (``--partition-lines``)."""
    home = tempfile.mkdtemp(prefix="bench-prefect-")
    env = dict(ENV, PREFECT_HOME=home)
    lines = sum(1 for _ in path.open("rb")) - 1 if path.suffix == ".csv" else 0
    out = {"lines": lines}
    with tempfile.TemporaryDirectory() as tmp:
        _wall([CLI, "nightly", "--root", str(Path(tmp) / "warm"), "--settle-seconds", "0"], env)
        cases = (("default", []),
                 ("dask_2_workers_whole", ["--runner", "dask", "--dask-workers", "2"]),
                 ("dask_2_workers_2_parts", ["--runner", "dask", "--dask-workers", "2", "--partition-lines",
                                             str(lines // 2 + 1)]),
                 ("dask_2_workers_4_parts", ["--runner", "dask", "--dask-workers", "2", "--partition-lines",
                                             str(lines // 4 + 1)]))
        for label, extra in cases:
            root = Path(tmp) / label
            (root / "inbox").mkdir(parents=True)
            shutil.copy(path, root / "inbox" / path.name)
            out[label] = _wall([CLI, "nightly", "--root", str(root), "--settle-seconds", "0",
                                "--as-of", "2024-06-30", *extra], env)
    shutil.rmtree(home, ignore_errors=True)
    return out


def adhoc_200(with_server: bool) -> dict:
    path = _data_dir() / "claims_200.xlsx"
    if not path.exists():
        subprocess.run([CLI, "sample", "--lines", "200", str(path)], check=True, env=ENV, stdout=subprocess.DEVNULL)
    out = tempfile.mkdtemp(prefix="bench-")
    cmd = [CLI, "scrub", str(path), "--out", out, "--as-of", "2024-06-30"]
    res = {"no_server": statistics.median(_wall(cmd) for _ in range(5))}
    if with_server:
        home = tempfile.mkdtemp(prefix="bench-prefect-")
        env = dict(ENV, PREFECT_HOME=home)
        server = subprocess.Popen([str(Path(PY).with_name("prefect")), "server", "start", "--host", "127.0.0.1",
                                   "--port", "4297"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(120):
                try:
                    urllib.request.urlopen("http://127.0.0.1:4297/api/health", timeout=1)
                    break
                except OSError:
                    time.sleep(0.5)
            env["PREFECT_API_URL"] = "http://127.0.0.1:4297/api"
            _wall(cmd, env)  # first run warms the server's caches
            res["local_server"] = statistics.median(_wall(cmd, env) for _ in range(5))
            res["prefect_share"] = res["local_server"] - res["no_server"]
        finally:
            server.terminate()
            server.wait(30)
            shutil.rmtree(home, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    return res


def main(argv: list[str]) -> None:
    if "--only-prefect" in argv:  # re-measure the Prefect and Dask sections into the last results
        report = json.loads((ROOT / "benchmarks" / "results.json").read_text())
        report["prefect"] = prefect_overhead(_ensure(10_000, "csv"))
        report["dask"] = dask_scaling(_ensure(100_000, "csv"))
        print(json.dumps({"prefect": report["prefect"], "dask": report["dask"]}), flush=True)
        write_results(report)
        return
    only = {"--only-partitions": ("partitions", lambda: dask_partitions(_ensure(500_000, "csv"))),
            "--only-adhoc": ("adhoc_200", lambda: adhoc_200("--no-server" not in argv))}
    if any(flag in argv for flag in only):  # re-measure these sections into the last results
        report = json.loads((ROOT / "benchmarks" / "results.json").read_text())
        for flag, (key, measure_) in only.items():
            if flag in argv:
                report[key] = measure_()
                print(json.dumps(report[key]), flush=True)
        write_results(report)
        return
    quick = "--quick" in argv
    sizes = [10_000, 100_000] if quick else [10_000, 100_000, 500_000]
    report: dict = {"cases": {}}
    for lines in sizes:
        for ext in ("xlsx", "csv"):
            path = _ensure(lines, ext)
            runs = RUNS
            cli_runs = 1 if lines >= 500_000 else RUNS
            print(f"measuring {path.name} ...", flush=True)
            report["cases"][path.name] = measure(path, runs, cli_runs)
            _print_case(path.name, report["cases"][path.name])
    if "--no-million" not in argv and not quick:
        path = _ensure(1_000_000, "csv")
        print(f"measuring {path.name} (one run) ...", flush=True)
        report["million"] = _case("pipeline", path)
        print(json.dumps(report["million"]), flush=True)
    # The 200-line scrub is a matter of seconds: measure it before the Dask clusters come and go.
    print("measuring ad hoc 200-line scrub ...", flush=True)
    report["adhoc_200"] = adhoc_200("--no-server" not in argv)
    print(json.dumps(report["adhoc_200"]), flush=True)
    print("measuring Prefect overhead ...", flush=True)
    report["prefect"] = prefect_overhead(_ensure(10_000, "csv"))
    print(json.dumps(report["prefect"]), flush=True)
    print("measuring Dask scaling ...", flush=True)
    report["dask"] = dask_scaling(_ensure(100_000 if not quick else 10_000, "csv"))
    print(json.dumps(report["dask"]), flush=True)
    if not quick:
        print("measuring one 500k-line CSV in partitions on Dask ...", flush=True)
        report["partitions"] = dask_partitions(_ensure(500_000, "csv"))
        print(json.dumps(report["partitions"]), flush=True)
    write_results(report)


def _print_case(name: str, r: dict) -> None:
    print(f"  {name}: end-to-end {r['end_to_end']:.2f}s (read {r['read_total']:.2f}, validate "
          f"{r['validate_total']:.2f}, write {r['write']:.2f}); floor {r['floor']:.2f}s; ratio {r['ratio']:.2f}; "
          f"CLI {r['cli_wall']:.2f}s; {r['lines_per_s']:,.0f} lines/s; peak {r['peak_rss_mb']:.0f} MB", flush=True)


def write_results(report: dict) -> None:
    versions = ", ".join(f"{p} {version(p)}" for p in ("pandas", "pandera", "prefect", "openpyxl", "python-calamine",
                                                       "pyarrow"))
    lines = [
        "# Benchmark results", "",
        f"Measured {dt.date.today().isoformat()} by `make bench` on {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; {versions}.",
        "Medians of 3 runs, each in a fresh process (500k-line CLI runs and the 1M-line run: one run).",
        "Floor = fastest plain read of the same file (calamine raw rows for xlsx, pyarrow for CSV) + a write-only",
        "openpyxl workbook of the same findings. End-to-end = read + validate + write in one process;",
        "ratio = end-to-end / floor. Validate = derive claim facts + pandera rules + findings.",
        "Read = floor read + the rest (normalise, and for a large xlsx the split read's gain on both cores,",
        "which can make the rest negative). Peak RSS is the pipeline process's own (the floor read runs apart).",
        "The floor read is timed first in its fresh process, as claimscrub's read is; 'warm' is the same read",
        "repeated in that process after the findings were made (not used in the ratio).", "",
        "| file | lines | findings | read s | (floor read + rest) | floor read warm s | validate s | (derive) "
        "| write s | end-to-end s | floor s | ratio | CLI wall s | lines/s | us/line | validate / floor | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in report["cases"].items():
        lines.append(
            f"| {name} | {r['lines']:,.0f} | {r['findings']:,.0f} | {r['read_total']:.2f} | ({r['floor_read']:.2f} "
            f"{'-' if r['read_beyond_floor'] < 0 else '+'} {abs(r['read_beyond_floor']):.2f}) | "
            f"{r.get('floor_read_warm', float('nan')):.2f} | {r['validate_total']:.2f} | ({r['derive']:.2f}) | {r['write']:.2f} | "
            f"{r['end_to_end']:.2f} | {r['floor']:.2f} | {r['ratio']:.2f} | {r['cli_wall']:.2f} | "
            f"{r['lines_per_s']:,.0f} | {r['us_per_line']:.1f} | {r['validate_share_of_floor']:.0%} | "
            f"{r['peak_rss_mb']:.0f} |")
    if "million" in report:
        m = report["million"]
        lines += ["", f"1M-line CSV (one run): end-to-end {m['end_to_end']:.1f} s (read {m['read_total']:.1f}, "
                  f"validate {m['validate_total']:.1f}, write {m['write']:.1f}), peak RSS {m['peak_rss_mb']:.0f} MB."]
    p = report["prefect"]
    lines += ["", "Prefect (ephemeral local API, a fresh process each run, warm PREFECT_HOME, 10k-line CSV):",
              f"- nightly flow, empty inbox (fixed overhead): {p['nightly_empty']:.1f} s",
              f"- nightly flow, one file: {p['nightly_one_file']:.1f} s (per-file work: "
              f"{p['nightly_one_file'] - p['nightly_empty']:.1f} s)",
              f"- ad hoc `scrub --record`: {p['record_adhoc']:.1f} s"]
    if "dask" in report:
        d = report["dask"]
        lines += ["", "Nightly flow over 4 copies of the 100k-line CSV (one run each, wall time incl. Prefect start):",
                  f"- default runner (files concurrent, each scrubbed in its own child process): {d['default']:.1f} s",
                  f"- Dask LocalCluster, 1 worker: {d['dask_1_worker']:.1f} s",
                  f"- Dask LocalCluster, 2 workers: {d['dask_2_workers']:.1f} s"]
    if "partitions" in report:
        q = report["partitions"]
        lines += ["", f"One {q['lines']:,}-line CSV in one night (one run each, wall time incl. Prefect start):",
                  f"- default runner, validated in one piece: {q['default']:.1f} s",
                  f"- Dask LocalCluster, 2 workers, one piece: {q['dask_2_workers_whole']:.1f} s",
                  f"- Dask LocalCluster, 2 workers, 2 partitions: {q['dask_2_workers_2_parts']:.1f} s",
                  f"- Dask LocalCluster, 2 workers, 4 partitions: {q['dask_2_workers_4_parts']:.1f} s"]
    a = report["adhoc_200"]
    lines += ["", f"Ad hoc `claimscrub scrub` of a 200-line xlsx, wall time with start-up (median of 5): "
              f"no Prefect server {a['no_server']:.2f} s"
              + (f"; local Prefect server {a['local_server']:.2f} s (Prefect share {a['prefect_share']:.2f} s)"
                 if "local_server" in a else "") + "."]
    (ROOT / "benchmarks" / "RESULTS.md").write_text("\n".join(lines) + "\n")
    (ROOT / "benchmarks" / "results.json").write_text(json.dumps(report, indent=1))
    print("wrote benchmarks/RESULTS.md")


if __name__ == "__main__":
    main(sys.argv[1:])
