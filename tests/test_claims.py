"""The claims table (issue 17 item 5, :mod:`medcap_utils.evaluation.claims` and ``medcap claims``): verdicts computed
from tiny run folders written here in the real run format (``write_run_dir``), scored with ImageCLEF ROUGE-1 (no
Java), so each rule can fail: a better run is shown and swapping the runs flips it, equal runs are not shown with
their numbers, a collapsed run is never shown, a missing run or a randomly initialised "zero-shot" model is not
testable, training seeds are pooled, and the files carry date and commit."""
from __future__ import annotations

import pandas as pd
import pytest

from medcap_utils.evaluation.claims import attention_verdict, claims_table, compare, threshold_verdict
from medcap_utils.evaluation.claims_report import write_claims
from medcap_utils.evaluation.runfiles import write_run_dir

CAPTIONS = ["chest x-ray showing a mass in the left lung", "ct of the abdomen with a cyst in the liver",
            "mri of the brain showing a lesion in the right frontal lobe", "ultrasound of the kidney with a stone",
            "pet scan with uptake in the mediastinal lymph nodes", "angiography of the right coronary artery stenosis",
            "x-ray of the right knee with a fracture of the tibia", "ct of the chest with pleural effusion on the left",
            "mri of the lumbar spine with disc herniation", "ultrasound of the thyroid with a nodule"]


@pytest.fixture()
def reports(tmp_path):
    """A data folder with 10 test captions and ``reports/runs`` holding a writer of runs on it."""
    data = tmp_path / "data"
    data.mkdir()
    ids = [f"ROCOv2_2023_test_{i:06d}" for i in range(1, len(CAPTIONS) + 1)]
    pd.DataFrame({"ID": ids, "Caption": CAPTIONS}).to_csv(data / "test_captions.csv", index=False)
    root = tmp_path / "reports"

    def run(name, captions, meta=None):
        write_run_dir(name, "captions", "test", str(data), dict(zip(ids, captions)), meta=meta or {},
                      runs_root=root / "runs")
    return root, run


def claim(kind=">", a="good", b="bad", **extra):
    return {"paper": "000", "id": "test", "notebook": "02", "statement": "a beats b", "paper_numbers": "-",
            "where": "-", "kind": kind, "metric": "rouge1", "a": a, "b": b, **extra}


SHIFTED = CAPTIONS[1:] + CAPTIONS[:1]  # every caption on another image: distinct captions, none right


def test_better_run_is_shown_and_swapping_the_runs_flips_it(reports):
    root, run = reports
    run("good", CAPTIONS)
    run("bad", SHIFTED)
    row = compare(claim(), root / "runs", n_boot=500)
    assert row["verdict"] == "shown"
    assert row["ours a"] == pytest.approx(1.0) and row["CI low"] > 0 and row["images"] == len(CAPTIONS)
    swapped = compare(claim(a="bad", b="good"), root / "runs", n_boot=500)
    assert swapped["verdict"].startswith("not shown (rouge1 ") and swapped["CI high"] < 0
    assert "one training seed" in row["note"]


def test_equal_runs_are_not_shown_and_the_verdict_gives_the_numbers(reports):
    root, run = reports
    run("good", CAPTIONS)
    run("bad", CAPTIONS)
    row = compare(claim(), root / "runs", n_boot=500)
    assert row["verdict"] == "not shown (rouge1 1.0000 vs 1.0000, diff +0.0000, 95% CI [+0.0000, +0.0000])"
    # non-inferiority: a tie is within the margin, so ">=" is shown where ">" is not
    assert compare(claim(kind=">="), root / "runs", n_boot=500)["verdict"] == "shown"


def test_collapsed_run_is_never_shown(reports):
    root, run = reports
    run("good", CAPTIONS[:4] + [CAPTIONS[4]] * 6)  # one caption on 6 of 10 images, still far better than "bad"
    run("bad", SHIFTED)
    row = compare(claim(), root / "runs", n_boot=500)
    assert row["CI low"] > 0  # the numbers alone would show it
    assert row["verdict"].startswith("not shown (collapsed: good, 5 distinct captions of 10; rouge1 ")


def test_missing_run_is_not_testable_offline(reports):
    root, run = reports
    run("good", CAPTIONS)
    row = compare(claim(b="nope", untestable="the demo has no such model"), root / "runs")
    assert row["verdict"] == "not testable offline (run nope not written: the demo has no such model)"


def test_zero_shot_needs_a_pretrained_stand_in(reports):
    root, run = reports
    run("good", CAPTIONS)
    run("bad", SHIFTED, meta={"train_time_s": 0.0, "settings": {"recipe": {"model": None}}})
    row = compare(claim(zero_shot=True), root / "runs", n_boot=200)
    assert row["verdict"].startswith("not testable offline (the demo's bad is randomly initialised")
    run("bad", SHIFTED, meta={"train_time_s": 3.2})
    assert "trained on the demo data (3.2 s)" in compare(claim(zero_shot=True), root / "runs", n_boot=200)["verdict"]
    run("bad", SHIFTED, meta={"train_time_s": 0.0, "settings": {"recipe": {"model": "models/standins/blip"}}})
    assert compare(claim(zero_shot=True), root / "runs", n_boot=200)["verdict"] == "shown"


def test_training_seeds_are_pooled_and_must_agree(reports):
    root, run = reports
    run("good", CAPTIONS)
    run("good_seed1", SHIFTED)  # a second training seed that fails completely
    run("bad", SHIFTED[:5] + CAPTIONS[5:])
    row = compare(claim(), root / "runs", n_boot=500)
    failed_seed = compare(claim(a="good_seed1"), root / "runs", n_boot=10)["ours a"]
    assert row["seeds"] == "2 x 1" and row["ours a"] == pytest.approx((1.0 + failed_seed) / 2)
    assert row["verdict"].startswith("not shown (") and "seed means" in row["note"]


def test_faster_uses_recorded_times_and_says_when_one_timing_decides(reports):
    root, run = reports
    run("good", CAPTIONS, meta={"train_time_s": 3.0})
    run("bad", SHIFTED, meta={"train_time_s": 4.0})
    row = compare(claim(kind="faster", metric=None), root / "runs")
    assert row["verdict"] == "shown" and "one timing of each decides it" in row["note"]
    run("good", CAPTIONS, meta={"train_time_s_repeats": [3.0, 4.5]})
    assert compare(claim(kind="faster", metric=None), root / "runs")["verdict"].startswith("not shown (training time")


def test_threshold_verdict_reads_the_sweep(tmp_path):
    table = tmp_path / "sweep.csv"
    pd.DataFrame({"threshold": [0.2, 0.3, 0.4], "f1_per_image": [0.5, 0.7, 0.6],
                  "f1_micro": [0.5, 0.6, 0.65]}).to_csv(table, index=False)
    row = threshold_verdict({"table": "sweep.csv"}, tmp_path)
    assert row["verdict"] == "shown" and row["diff a-b"] == pytest.approx(0.1)
    pd.DataFrame({"threshold": [0.2, 0.3], "f1_per_image": [0.5, 0.7], "f1_micro": [0.5, 0.6]}).to_csv(table,
                                                                                                       index=False)
    assert threshold_verdict({"table": "sweep.csv"}, tmp_path)["verdict"] == "not shown (both pick threshold 0.3)"


def test_attention_verdict_reads_the_claims_model_row(tmp_path):
    """Notebook 07's grounding table holds several models; each claim reads its own row, and a hit rate within
    the chance band is not shown."""
    rows = [{"model": m, "steps": "finding word", "n": 300, "hit_rate": hit, "chance_peak": 0.15,
             "attention_mass": 0.2, "chance_area": 0.1} for m, hit in
            [("trained", 0.30), ("untrained", 0.16), ("frozen stand-in encoder", 0.05)]]
    pd.DataFrame(rows).to_csv(tmp_path / "g.csv", index=False)
    assert attention_verdict({"table": "g.csv"}, tmp_path)["verdict"] == "shown"
    low = attention_verdict({"table": "g.csv", "model": "frozen stand-in encoder"}, tmp_path)
    assert low["verdict"].startswith("not shown (hit rate 0.050 vs chance 0.150") and low["a"].startswith("frozen")
    assert attention_verdict({"table": "g.csv", "model": "untrained"}, tmp_path)["verdict"].startswith("not shown")
    gone = attention_verdict({"table": "g.csv", "model": "absent", "untestable": "why"}, tmp_path)
    assert gone["verdict"] == "not testable offline (no 'absent' 'finding word' row in the table: why)"


def test_table_files_carry_date_commit_and_machine(reports, tmp_path):
    root, run = reports
    run("good", CAPTIONS)
    run("bad", SHIFTED)
    table = claims_table(root, items=[claim(), claim(b="nope")], n_boot=200)
    assert list(table["verdict"]) == ["shown", "not testable offline (run nope not written)"]
    info = {"date": "2026-12-02", "commit": "abcdef1234", "machine": "test box"}
    paths = write_claims(table, tmp_path / "claims", info)
    assert set(paths) == {"claims-2026-12-02-abcdef1.csv", "claims-2026-12-02-abcdef1.md", "latest.csv", "latest.md"}
    md = paths["latest.md"].read_text()
    assert "2026-12-02" in md and "abcdef1234" in md and "test box" in md and "| shown |" in md
    csv = pd.read_csv(paths["claims-2026-12-02-abcdef1.csv"])
    assert set(csv["commit"]) == {"abcdef1234"} and list(csv["verdict"])[0] == "shown"


def test_every_claim_of_the_yaml_gets_a_verdict_from_an_empty_reports_folder(tmp_path, capsys):
    from medcap_utils.cli import main
    from medcap_utils.papers import claims

    (tmp_path / "runs").mkdir()
    assert main(["claims", "--reports", str(tmp_path), "--n-boot", "10"]) == 0
    out = pd.read_csv(tmp_path / "claims" / "latest.csv")
    assert list(out["claim"]) == [c["id"] for c in claims()]
    assert out["verdict"].str.startswith("not testable offline (").all()
    assert {"000", "001", "002", "003", "004"} <= set(out["paper"].astype(str).str.zfill(3))
    assert "wrote " in capsys.readouterr().out
    assert main(["claims", "--reports", str(tmp_path / "absent")]) == 2


def test_report_gathers_the_whole_table(tmp_path):
    from medcap_utils.evaluation.report_markdown import build_markdown_report
    from medcap_utils.papers import claims

    text = build_markdown_report(tmp_path)
    section = text[text.index("## Claims table"):]
    assert text.index("## Summary per paper") < text.index("## Claims table")
    assert all(f"| {c['id']} |" in section for c in claims())
    assert "### 004: XAI-LSTM 2022" in section and "commit" in section.splitlines()[0]


def test_a_claim_reads_each_profiles_own_run_names(reports):
    root, run = reports
    run("good", CAPTIONS)
    run("bad", SHIFTED)
    per_profile = claim(a={"demo": "good", "rocov2": "good-rocov2"}, b="bad")
    assert compare(per_profile, root / "runs", n_boot=100)["verdict"] == "shown"
    row = compare(per_profile, root / "runs", n_boot=100, profile="rocov2")
    assert row["a"] == "good-rocov2" and row["verdict"] == "not testable offline (run good-rocov2 not written)"
    assert "names no run for profile" in compare(claim(a={"demo": "good"}), root / "runs", profile="rocov2")["verdict"]
