"""The claims table as files and as each notebook's closing rows: ``medcap claims`` (``make claims``), notebooks 02-07
(:func:`show_paper`, their own paper's rows), notebook 09 and ``REPORT.md`` (:func:`markdown_section`).

    medcap claims [--reports reports] [--out reports/claims] [--papers 000 001] [--n-boot 1000]

writes ``<out>/claims-<YYYY-MM-DD>-<shortcommit>.csv`` and ``.md`` and copies them to ``<out>/latest.csv`` /
``latest.md``; the markdown starts with the date, the commit and the machine, the CSV carries them as columns.
The verdicts are computed by :func:`medcap_utils.evaluation.claims.claims_table` (its docstring states the rules).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import platform
import sys
from pathlib import Path

import pandas as pd

from medcap_utils.atomic import atomic_write_text
from medcap_utils.evaluation.claims import claims_table

SHORT = ["claim", "statement", "paper's numbers", "where", "metric", "a", "b", "ours a", "ours b", "diff a-b",
         "CI low", "CI high", "verdict"]
RULES = ("Verdicts: a paired bootstrap (1000 resamples) of per-image scores on the same test images; '>' is shown "
         "when the 95% CI of the difference a - b is above 0, '>=' / 'close' when it is above minus the stated margin; "
         "a claim involving a collapsed run (one caption for half of the images or more) is never shown; a run the "
         "demo does not write, or a zero-shot model that is not pretrained, makes a claim 'not testable offline'. "
         "Rules in full: medcap_utils/evaluation/claims.py.")


def stamp() -> dict:
    """Date (UTC), commit and machine, as written into every claims file."""
    from medcap_utils.metrics.provenance import device_name, git_commit

    commit = git_commit() or "unknown"
    return {"date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d"),
            "time": _dt.datetime.now(_dt.timezone.utc).strftime("%H:%M UTC"), "commit": commit[:10],
            "machine": f"{platform.node() or 'unknown host'}, {device_name()}, {platform.system()} "
                       f"{platform.machine()}"}


def _rounded(table: pd.DataFrame) -> pd.DataFrame:
    out = table.copy()
    for column in ("ours a", "ours b", "diff a-b", "CI low", "CI high"):
        out[column] = pd.to_numeric(out[column], errors="coerce").round(4)
    return out


def markdown(table: pd.DataFrame, info: dict) -> str:
    """The whole table as markdown, one section per paper, headed by date, commit and machine."""
    from medcap_utils.papers import BY_KEY
    from medcap_utils.report import markdown_table

    kinds = table["verdict"].map(lambda v: "shown" if v == "shown" else
                                 ("not shown" if v.startswith("not shown") else "not testable offline"))
    lines = [f"# Claims table: {info['date']} {info.get('time', '')}, commit {info['commit']}",
             "", f"Machine: {info['machine']}. Reports read: {info.get('reports', 'reports')}.", "",
             f"{len(table)} claims: " + ", ".join(f"{n} {k}" for k, n in kinds.value_counts().items()) + ".", "",
             RULES, ""]
    for paper, part in table.groupby("paper", sort=True):
        lines += [f"## {paper}: {BY_KEY[paper].short}", "", markdown_table(_rounded(part)[SHORT]), ""]
        notes = [f"- {c}: {n}" for c, n in zip(part["claim"], part["note"]) if isinstance(n, str) and n]
        lines += (["Notes:", *notes, ""] if notes else [])
    return "\n".join(lines)


def write_claims(table: pd.DataFrame, out_dir, info: dict | None = None) -> dict:
    """Write the dated CSV and markdown and the ``latest`` copies; returns ``{name: path}``."""
    info = info or stamp()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"claims-{info['date']}-{info['commit'][:7]}"
    csv = table.assign(date=info["date"], commit=info["commit"], machine=info["machine"]).to_csv(index=False)
    md = markdown(table, info) + "\n"
    paths = {}
    for name, text in ((f"{stem}.csv", csv), (f"{stem}.md", md), ("latest.csv", csv), ("latest.md", md)):
        atomic_write_text(out_dir / name, text)
        paths[name] = out_dir / name
    return paths


def show_paper(key: str, notebook: str | None = None, reports_root=None, n_boot: int = 1000,
               profile: str | None = None) -> pd.DataFrame:
    """The claims of paper ``key`` (those decided by ``notebook``'s runs, when given) with their measured verdicts;
    each notebook 02-07 ends with it. ``attrs['note']``: the rules, and which notebooks hold the paper's other rows."""
    from medcap_utils.papers import claims
    from medcap_utils.paths import reports_root as default_root

    items = [c for c in claims() if c["paper"] == key and (notebook is None or c["notebook"] == notebook)]
    table = claims_table(reports_root or default_root(), n_boot=n_boot, items=items, profile=profile)
    shown = _rounded(table)[SHORT]
    others = sorted({c["notebook"] for c in claims() if c["paper"] == key} - {notebook}) if notebook else []
    elsewhere = (f" Seed {key}'s other claims are measured in notebook(s) {', '.join(others)}; the whole table: "
                 "medcap claims (reports/claims/latest.md) and notebook 09.") if others else ""
    shown.attrs["note"] = RULES + elsewhere
    return shown


def markdown_section(reports_root=None, n_boot: int = 1000) -> str:
    """The whole claims table as a markdown section (notebook 09 and ``REPORT.md``)."""
    from medcap_utils.paths import reports_root as default_root

    root = reports_root or default_root()
    text = markdown(claims_table(root, n_boot=n_boot), {**stamp(), "reports": str(root)})
    return text.replace("# Claims table", "## Claims table", 1).replace("\n## ", "\n### ")


def main(argv=None, prog: str | None = None) -> int:
    from medcap_utils.paths import reports_root, resolve

    ap = argparse.ArgumentParser(prog=prog or "python -m medcap_utils.evaluation.claims_report",
                                 description="each paper's claims with measured verdicts, from reports/runs and "
                                             "reports/tables, written to reports/claims/")
    ap.add_argument("--reports", help="reports folder to read (default: the project's reports/)")
    ap.add_argument("--out", help="where to write the table (default: <reports>/claims)")
    ap.add_argument("--papers", nargs="+", help="only these papers (000 ... 004)")
    ap.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples")
    ap.add_argument("--no-cache", action="store_true", help="recompute every per-image score")
    ap.add_argument("--profile", help="whose run names to read (default: the profile <reports>/manifest.json "
                                      "records, else demo)")
    args = ap.parse_args(argv)
    root = resolve(args.reports) if args.reports else reports_root()
    if not (root / "runs").is_dir() and not (root / "tables").is_dir():
        print(f"{prog or 'claims'}: error: {root} has neither runs/ nor tables/ (run the notebooks first)",
              file=sys.stderr)
        return 2
    table = claims_table(root, papers=args.papers, cache=not args.no_cache, n_boot=args.n_boot, profile=args.profile)
    info = {**stamp(), "reports": str(root)}
    paths = write_claims(table, resolve(args.out) if args.out else root / "claims", info)
    for verdict, claim in zip(table["verdict"], table["claim"]):
        print(f"{claim}: {verdict}")
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
