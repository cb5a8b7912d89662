"""Seed 000's decoding grid on a tiny random BLIP: the constraint, beam search against greedy, the
run directories and the measured speed and memory."""
import copy
import json

import numpy as np
import pandas as pd
import pytest
import torch

from medcap_utils.decoding.captioners import PeakMemory, blip_captioner, repeated_ngrams
from medcap_utils.decoding.config import DecodingConfig
from medcap_utils.experiments.decoding_experiments import DECODING_GRID, GridSetting, paper_table1, run_decoding_grid
from medcap_utils.models.blip import build_demo_blip, load_blip, pixel_values

CAPTIONS = ["axial ct of the chest shows a mass", "sagittal mri of the spine", "ultrasound of the liver",
            "chest x-ray shows an effusion on the left"] * 10


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("blip")
    build_demo_blip(out, CAPTIONS, vocab_size=60, image_size=32, patch_size=8, vision_hidden=32,
                    vision_layers=1, text_hidden=32, text_layers=2, heads=4)
    model, processor = load_blip(out)
    return model.eval(), processor


@pytest.fixture(scope="module")
def pixels(tiny):
    _, processor = tiny
    images = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    return pixel_values(torch.from_numpy(images), processor)


def test_grid_is_the_papers():
    assert [c.config.num_beams for c in DECODING_GRID] == [1, 3, 4, 5, 10]
    assert all(c.config.no_repeat_ngram_size == 3 for c in DECODING_GRID)
    table = paper_table1()
    assert len(table) == 10 and set(table["model"]) == {"BLIP base", "BLIP large"}
    base = table[table["model"] == "BLIP base"].set_index("label")
    assert base.loc["(4)", "ROUGE"] == 0.264674 and base.loc["(2)", "BLEU"] == 0.300932
    # as printed in the paper: rows (1) and (5) are identical
    assert (base.loc["(1)", ["ROUGE", "BERTScore", "BLEU"]].tolist()
            == base.loc["(5)", ["ROUGE", "BERTScore", "BLEU"]].tolist())


def _generate(model, pixels, max_new_tokens=16, **kwargs):
    return model.generate(pixel_values=pixels, max_new_tokens=max_new_tokens, do_sample=False, **kwargs)


def test_no_repeated_trigram_in_any_output(tiny, pixels):
    model = copy.deepcopy(tiny[0])
    # Push two tokens far above the rest so that unconstrained decoding loops on them: the
    # constraint then has real work to do and the check below can fail.
    bias = model.text_decoder.cls.predictions.bias
    with torch.no_grad():
        bias[10] += 8.0
        bias[11] += 7.5
    pixels = pixels[:4]
    free = _generate(model, pixels, num_beams=1, no_repeat_ngram_size=0)
    assert all(repeated_ngrams(row.tolist()) for row in free)
    for setting in DECODING_GRID:
        out = model.generate(pixel_values=pixels, **setting.config.replace(max_new_tokens=16).generate_kwargs())
        pad = model.config.text_config.pad_token_id
        for row in out:
            tokens = [t for t in row.tolist() if t != pad]
            assert repeated_ngrams(tokens, 3) == [], setting.name


def _sequence_scores(model, pixels, num_beams):
    """Sum of the processed log-probabilities each search optimises (length_penalty 0: plain sums)."""
    out = _generate(model, pixels, num_beams=num_beams, no_repeat_ngram_size=3, length_penalty=0.0,
                    output_scores=True, return_dict_in_generate=True)
    if num_beams == 1:
        steps = model.compute_transition_scores(out.sequences, out.scores, normalize_logits=True)
        return steps.masked_fill(~torch.isfinite(steps), 0).sum(dim=1), out.sequences
    return out.sequences_scores, out.sequences


def test_beam_search_scores_at_least_greedy(tiny, pixels):
    model, _ = tiny
    greedy, greedy_seq = _sequence_scores(model, pixels, 1)
    for beams in (3, 5):
        beam, beam_seq = _sequence_scores(model, pixels, beams)
        ok = beam >= greedy - 1e-4
        # beam search is not guaranteed to beat greedy on every input, but on average it must
        assert ok.float().mean() >= 0.75, (beams, beam, greedy)
        assert beam.mean() >= greedy.mean() - 1e-4
        width = min(beam_seq.shape[1], greedy_seq.shape[1])
        differs = (beam_seq[:, :width] != greedy_seq[:, :width]).any(dim=1) | (beam_seq.shape[1] != greedy_seq.shape[1])
        assert bool(differs.any()) or torch.allclose(beam, greedy, atol=1e-4)


def test_peak_memory_sees_a_large_cpu_allocation():
    with PeakMemory("cpu") as memory:
        block = torch.ones(64 * 2**20 // 4 * 4)  # 256 MiB of float32, touched
        block.add_(1)
        del block
    assert memory.kind == "cpu_rss_sampled"
    assert memory.delta_mb > 150


def test_grid_writes_one_run_dir_per_configuration(tiny, demo_root, tmp_path, monkeypatch):
    monkeypatch.setenv("MEDCAP_ROOT", str(tmp_path))  # reports/runs/ goes to a temporary repository root
    (tmp_path / "pyproject.toml").write_text("")
    model, processor = tiny
    configs = (DECODING_GRID[0], GridSetting("beam3", "(2)", DecodingConfig(num_beams=3, no_repeat_ngram_size=3)))
    table = run_decoding_grid(blip_captioner(model, processor), demo_root, "test", "tiny", configs=configs,
                              batch_size=4, max_new_tokens=12, limit=6, protocol="coco",
                              metrics=["Bleu_1", "rouge1"])
    assert isinstance(table, pd.DataFrame) and table["decoding"].tolist() == ["greedy", "beam3"]
    assert (table["n_images"] == 6).all() and (table["captions_per_s"] > 0).all()
    for row in table.itertuples():
        run_dir = tmp_path / "reports" / "runs" / f"decoding_tiny_{row.decoding}"
        assert str(run_dir) == row.run_dir
        lines = (run_dir / "captions.csv").read_text().splitlines()
        assert len(lines) == 1 + 6
        meta = json.loads((run_dir / "decoding.json").read_text())
        assert meta["decoding"]["num_beams"] == row.num_beams and meta["peak_mb"] > 0
        scores = json.loads((run_dir / "scores.json").read_text())["scores"]
        assert 0 <= scores["Bleu_1"] <= 1 and "rouge1" in scores
