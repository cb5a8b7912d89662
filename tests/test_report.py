"""REPORT.md (notebook 09): a summary per paper first, numbers read from the run's tables, bounded
details, well-formed headings (issue 15, item 6)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from medcap_utils.evaluation.report_markdown import build_markdown_report
from medcap_utils.evaluation.runfiles import write_run_dir
from medcap_utils.papers import PAPERS

IDS = [f"ROCOv2_2023_test_{i:06d}" for i in range(1, 41)]


def _runs(root: Path, name: str, distinct: int):
    write_run_dir(name, "captions", "test", str(root), {i: f"caption {k % distinct}" for k, i in enumerate(IDS)},
                  runs_root=root / "runs")


def _write(reports: Path, name: str, rows: list[dict]):
    (reports / "tables").mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(reports / "tables" / f"{name}.csv", index=False)


@pytest.fixture()
def reports(tmp_path) -> Path:
    """A small reports folder shaped like a demo run's: the tables the summary reads, run folders, a
    long table, a wide table, a table with a long text column, a figure and a manifest."""
    r = tmp_path / "reports"
    _write(r, "02_blip_test", [{"model": "2Q2T base (fine-tuned)", "BLEU-4": 0.0942, "distinct captions": 30},
                               {"model": "UIT-Oggy large (fine-tuned)", "BLEU-4": 0.0561, "distinct captions": 1},
                               {"model": "most frequent caption", "BLEU-4": 0.0039, "distinct captions": 1}])
    _runs(r, "blip_demo_test", 30)
    _runs(r, "blip_demo_test_uit_oggy", 1)
    _write(r, "03_medblip_comparison", [{"model": m, "rouge1": v} for m, v in
                                        [("blip_full", 0.255), ("blip_decoder_only", 0.276),
                                         ("blip_encoder_only", 0.018),
                                         ("blip_zero_shot", 0.019)]])
    for m, d in [("blip_full", 25), ("blip_decoder_only", 25), ("blip_encoder_only", 20), ("blip_zero_shot", 3)]:
        _runs(r, f"medblip_{m}", d)
    _write(r, "03_medblip_training_time", [{"variant": "full", "time_vs_full": 1.0},
                                           {"variant": "decoder_only", "time_vs_full": 0.62,
                                            "settings": "{'recipe': " + "x" * 400 + "}"}])
    _write(r, "04_decoding_grid", [{"model": "blip_base", "decoding": d, "n_images": 40, "rouge1": v}
                                   for d, v in [("greedy", 0.231), ("beam3", 0.245)]])
    for d in ("greedy", "beam3"):
        _runs(r, f"decoding_blip_base_{d}", 12)
    _write(r, "05_medcsra_scores", [{"split": "test", "system": "MedCSRA (medcsra)", "f1_primary": 0.7633,
                                     "f1_secondary": 0.8354},
                                    {"split": "test", "system": "top-4 frequency", "f1_primary": 0.3004,
                                     "f1_secondary": 0.3321}])
    _write(r, "06_variants", [{"model": m, "Bleu_1": b, "CIDEr": c} for m, b, c in
                              [("BLIP2-like (CLIP only)", 0.181, 0.155), ("SAM-BLIP2 (SAM only)", 0.268, 0.237),
                               ("MSMedCap (CLIP + SAM)", 0.216, 0.156)]])
    for run in ("06_msmedcap_blip2", "06_msmedcap_sam_blip2", "06_msmedcap_dual"):
        _runs(r, run, 15)
    _write(r, "07_scores", [{"system": "XAI-LSTM (ours)", "paper BLEU": 0.0119, "Bleu_4": 0.1056},
                            {"system": "most frequent caption", "paper BLEU": 0.0, "Bleu_4": 0.0040}])
    _runs(r, "xai-lstm-demo", 25)
    _write(r, "07_attention_on_finding", [{"model": "trained", "steps": "finding word", "mass / area": 1.68},
                                          {"model": "untrained", "steps": "finding word", "mass / area": 0.95}])
    _write(r, "metrics", [{"run": f"run{i}", "metric": "rouge1", "value": i / 1000} for i in range(700)])
    _write(r, "08_metrics_wide", [{f"metric{j}": j for j in range(30)} for _ in range(5)])
    _write(r, "01_top_concepts", [{"cui": f"C{i:07d}", "images": 100 - i} for i in range(20)])
    (r / "figures").mkdir()
    (r / "figures" / "01_top_concepts.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (r / "manifest.json").write_text(json.dumps({"profile": "demo", "git": {"commit": "abc123", "dirty": False},
                                                 "started": "2026-12-02T00:00:00+00:00", "python": "3.11",
                                                 "platform": "linux", "cpu_count": 2,
                                                 "notebooks": [{"notebook": "00_data_setup.ipynb", "status": "ok",
                                                                "wall_s": 8.1}],
                                                 "packages": {"torch": "2.13.0"}}))
    return r


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return text[start: end if end >= 0 else None]


def test_summary_per_paper_comes_first(reports):
    text = build_markdown_report(reports)
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert headings[0] == "## Summary per paper"
    summary = _section(text, "## Summary per paper")
    for paper in PAPERS:
        part = summary[summary.index(f"### {paper.short}"):]
        part = part[: part.find("\n### ") if "\n### " in part else None]
        for bullet in ("**Paper**", "**Claim**", "**This run measured**", "**Verdict**", "**On real data**"):
            assert bullet in part, (paper.short, bullet)
        assert "make reproduce PROFILE=rocov2" in part
    assert "https://arxiv.org/abs/2505.14726" in summary  # the one paper whose link the sources state


def test_numbers_come_from_the_tables(reports):
    before = _section(build_markdown_report(reports), "## Summary per paper")
    assert "MedCSRA primary 0.763" in before and "0.62x" in before
    scores = pd.read_csv(reports / "tables" / "05_medcsra_scores.csv")
    scores.loc[scores["system"].str.startswith("MedCSRA"), "f1_primary"] = 0.2468
    scores.to_csv(reports / "tables" / "05_medcsra_scores.csv", index=False)
    after = _section(build_markdown_report(reports), "## Summary per paper")
    assert "MedCSRA primary 0.247" in after and "0.763" not in after
    assert "does not beat the frequency baseline" in after  # the verdict follows the number


def test_collapsed_runs_are_named_and_block_the_verdict(reports):
    summary = _section(build_markdown_report(reports), "## Summary per paper")
    uit = summary[summary.index("### UIT-Oggy"):]
    assert "1 distinct captions for 40 images" in uit and "captioner is collapsed" in uit
    medblip = summary[summary.index("### MedBLIP"):summary.index("### UIT-Oggy")]
    assert "decoder-only scores best" in medblip  # its runs vary: the ranking is reported
    _runs(reports, "medblip_blip_full", 1)  # now full fine-tuning writes one caption for every image
    medblip = _section(build_markdown_report(reports), "## Summary per paper")
    medblip = medblip[medblip.index("### MedBLIP"):medblip.index("### UIT-Oggy")]
    assert "cannot show which fine-tuning is best" in medblip and "full" in medblip


def test_details_are_bounded_and_name_every_csv(reports):
    from medcap_utils.papers import claims

    text = build_markdown_report(reports, max_rows=5)
    # the claims table is whole by design (a verdict row and at most a note per claim of configs/claims.yaml);
    # everything else is bounded by max_rows whatever the notebooks wrote
    table = _section(text, "## Claims table")
    assert len(table.splitlines()) < 20 + 2 * len(claims())
    assert len(text.splitlines()) - len(table.splitlines()) < 200
    for csv in (reports / "tables").glob("*.csv"):
        assert f"`tables/{csv.name}`" in text
    assert "700 rows x 3 columns, in the CSV only" in text  # the long metrics table is linked, not dumped
    assert "5 rows x 30 columns, in the CSV only" in text
    top = _section(text, "## Notebook 01")
    assert "first 5 of 20 rows" in top and "C0000005" not in top
    assert "`settings` only in the CSV" in text and "x" * 200 not in text  # left out whole, not cut
    table_rows = [line for line in text.splitlines() if line.startswith("| ") and "C00000" in line]
    assert len(table_rows) == 5


def test_every_heading_is_well_formed(reports):
    text = build_markdown_report(reports)
    for line in text.splitlines():
        if line.startswith("#"):
            assert re.fullmatch(r"#{1,3} \S.*\S", line), line
    notebook_headings = [line for line in text.splitlines() if line.startswith("## Notebook")]
    assert notebook_headings and all(re.fullmatch(r"## Notebook \d\d: [A-Z]\S.*", h) for h in notebook_headings)
    assert "## Notebook me" not in text
    assert "`tables/metrics.csv`" in _section(text, "## Notebook 08")  # metrics.csv belongs to notebook 08
    assert text.count("<details>") == text.count("</details>")


def test_report_without_outputs_still_builds(tmp_path):
    text = build_markdown_report(tmp_path)
    assert text.startswith("# medcap report")
    assert "nothing: its notebooks wrote no tables here" in text


def test_readme_cites_the_papers_and_shows_the_ways_in():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    head = readme[: readme.index("## Profiles")]  # papers, ways in and the notebook table come before the details
    for paper in PAPERS:
        assert paper.title.split(" (")[0].split(":")[0] in head or paper.key == "004", paper.short
        if paper.link:
            assert paper.link in head
        for repo in paper.code:
            assert repo in head
    for way in ("make reproduce", "make lab", "Open in Colab"):
        assert way in head
    assert "| notebook | paper | on the demo" in head
    assert "reports/benchmarks/README.md" in readme and "## Speed (GPU work in progress)" not in readme
