"""Run a profile twice from scratch and compare what the two runs computed (issue 14: same inputs, same numbers).

    python -m medcap_utils.runner.repeat_check --profile demo --out build/repeat      # `make repeat-check`
    python -m medcap_utils.runner.repeat_check --compare build/repeat/a build/repeat/b

Each run is a fresh ``python -m medcap_utils.runner.reproduce`` into its own folder (``<out>/a``, ``<out>/b``): its
own data (synthesized again), image cache, models, runs, tables and executed notebooks, and another
``PYTHONHASHSEED``, so nothing is reused and hash-order effects would show. Then every table and run file
(``.csv``, ``.json``, ``.jsonl``) is compared value by value, exactly, apart from fields that measure time
(:data:`MEASURED`: time, dates, memory), and every weight file by its bytes (sha256). Figures are compared too
but only reported:
a plot of timings differs by design. Writes ``<out>/repeat-report.json``; exits 1 when any value differs.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from medcap_utils.atomic import atomic_write_json
from medcap_utils.model_files import file_sha256
from medcap_utils.paths import resolve

# Column or key names of what the machine measures, not what the run computes: time, speed, dates and
# memory. They differ between two runs by nature and are left out of the comparison.
MEASURED = re.compile(r"(^|[_ .-])(s|sec|secs|seconds|ms|wall|wall_s|time|elapsed|duration|started|finished|date|"
                      r"created|timestamp|throughput|per_s|per_sec|per_second|speed|it_s|img_s|images_per_s|"
                      r"mb|gb|bytes|rss|memory)($|[_ .-])"
                      r"|_s$|seconds|throughput|per_s(ec)?\b", re.IGNORECASE)
TABLES = {".csv", ".json", ".jsonl"}
WEIGHTS = {".safetensors", ".pt", ".pth", ".bin", ".npy", ".npz"}
FIGURES = {".png", ".svg", ".pdf"}
SKIP_DIRS = {"cache", "data", "notebooks", ".ipynb_checkpoints"}  # inputs and executed copies (timings in outputs)
SKIP_FILES = {"manifest.json", "manifest-partial.json", "repeat-report.json"}


def is_measurement(name: str) -> bool:
    return bool(MEASURED.search(str(name)))


def _files(root: Path) -> dict[str, Path]:
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if path.is_file() and not (set(rel.parts[:-1]) & SKIP_DIRS) and path.name not in SKIP_FILES:
            out[rel.as_posix()] = path
    return out


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def diff_values(a, b, where: str = "") -> list[str]:
    """Differences between two JSON values, skipping timing keys; ``where`` is the dotted path."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b), key=str):
            if is_measurement(key):
                continue
            if key not in a or key not in b:
                out.append(f"{where}{key}: only in {'a' if key in a else 'b'}")
            else:
                out += diff_values(a[key], b[key], f"{where}{key}.")
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{where.rstrip('.')}: {len(a)} items vs {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in diff_values(x, y, f"{where}{i}.")]
    return [] if _same(a, b) else [f"{where.rstrip('.')}: {a!r} vs {b!r}"]


def _without_root(text: str, root: Path) -> str:
    """Paths inside a run folder (its data, models, runs) written as ``<run>/...``, the same in both runs."""
    return text.replace(str(root.resolve()), "<run>").replace(str(root), "<run>")


def _load(path: Path, root: Path):
    if path.suffix == ".csv":
        import pandas as pd

        frame = pd.read_csv(path, keep_default_na=False)
        frame = frame[[c for c in frame.columns if not is_measurement(c)]]
        return [{k: _without_root(v, root) if isinstance(v, str) else v for k, v in row.items()}
                for row in frame.to_dict(orient="records")]
    text = _without_root(path.read_text(encoding="utf-8"), root)
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    return json.loads(text)


def compare_runs(a: Path, b: Path) -> dict:
    """What differs between two output folders: tables/run files by value, weights by bytes, figures by bytes."""
    fa, fb = _files(a), _files(b)
    report = {"a": str(a), "b": str(b), "only_in_a": sorted(set(fa) - set(fb)), "only_in_b": sorted(set(fb) - set(fa)),
              "values_compared": 0, "weights_compared": 0, "figures_compared": 0,
              "value_differences": {}, "weight_differences": [], "figure_differences": []}
    for rel in sorted(set(fa) & set(fb)):
        suffix = Path(rel).suffix
        if suffix in TABLES:
            report["values_compared"] += 1
            try:
                diffs = diff_values(_load(fa[rel], a), _load(fb[rel], b))
            except (ValueError, UnicodeDecodeError) as error:  # unreadable: compare the bytes instead
                diffs = ([] if file_sha256(fa[rel]) == file_sha256(fb[rel])
                         else [f"unreadable ({error}) and bytes differ"])
            if diffs:
                report["value_differences"][rel] = (diffs[:20]
                                                    + ([f"... {len(diffs) - 20} more"] if len(diffs) > 20 else []))
        elif suffix in WEIGHTS:
            report["weights_compared"] += 1
            if file_sha256(fa[rel]) != file_sha256(fb[rel]):
                report["weight_differences"].append(rel)
        elif suffix in FIGURES:
            report["figures_compared"] += 1
            if file_sha256(fa[rel]) != file_sha256(fb[rel]):
                report["figure_differences"].append(rel)
    report["identical"] = not (report["only_in_a"] or report["only_in_b"] or report["value_differences"]
                               or report["weight_differences"])
    return report


def run_twice(profile: str, out: Path, only: list[str] | None = None) -> dict:
    """Two fresh runs of ``profile`` into ``out/a`` and ``out/b``; their wall times and the comparison."""
    times = {}
    for name, hash_seed in (("a", "1"), ("b", "2")):
        folder = out / name
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "MEDCAP_CACHE": str(folder / "cache")}
        cmd = [sys.executable, "-m", "medcap_utils.runner.reproduce", "--profile", profile, "--reports", str(folder)]
        if profile == "demo":  # synthesize the demo data again inside the run folder
            cmd += ["--data", str(folder / "data")]
        if only:
            cmd += ["--only", *only]
        print(f"run {name}: {' '.join(cmd)}", flush=True)
        start = time.perf_counter()
        code = subprocess.run(cmd, env=env).returncode
        times[name] = round(time.perf_counter() - start, 1)
        if code:
            raise SystemExit(f"run {name} failed (exit {code}); see {folder / 'notebooks'}")
    report = compare_runs(out / "a", out / "b")
    report.update(profile=profile, only=only, wall_s=times)
    return report


def _summary(report: dict) -> str:
    lines = [f"compared {report['values_compared']} table/run files by value, "
             f"{report['weights_compared']} weight files "
             f"and {report['figures_compared']} figures by bytes"]
    if "wall_s" in report:
        lines.append(f"wall time: run a {report['wall_s']['a']} s, run b {report['wall_s']['b']} s")
    for key in ("only_in_a", "only_in_b", "weight_differences", "figure_differences"):
        if report[key]:
            lines.append(f"{key} ({len(report[key])}): {', '.join(report[key][:10])}")
    for rel, diffs in report["value_differences"].items():
        lines.append(f"{rel}: " + "; ".join(diffs[:3]))
    lines.append("identical: no value or weight differs" if report["identical"] else "DIFFERENT")
    return "\n".join(lines)


def main(argv=None, prog: str | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog or "python -m medcap_utils.runner.repeat_check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="demo", help="configs/<profile>.yaml to run twice")
    parser.add_argument("--out", default="build/repeat", help="folder for the two runs and repeat-report.json")
    parser.add_argument("--only", nargs="*", default=None, help="notebook number prefixes (default: all)")
    parser.add_argument("--compare", nargs=2, metavar=("A", "B"), help="only compare two existing output folders")
    args = parser.parse_args(argv)
    if args.compare:
        a, b = (resolve(p) for p in args.compare)
        for folder in (a, b):
            if not folder.is_dir():
                print(f"error: {folder} is not a folder", file=sys.stderr)
                return 1
        report, out = compare_runs(a, b), a.parent
    else:
        out = resolve(args.out)
        try:
            report = run_twice(args.profile, out, args.only)
        except SystemExit as stop:  # a run that failed: its one line names the folder to read
            if not isinstance(stop.code, str):
                raise
            print(f"error: {stop.code}", file=sys.stderr)
            return 1
    atomic_write_json(out / "repeat-report.json", report)
    print(_summary(report))
    print(f"report: {out / 'repeat-report.json'}")
    return 0 if report["identical"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
