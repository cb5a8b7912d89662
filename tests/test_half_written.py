"""Nothing silent (issue 14): a kill or a full disk never leaves a half-written folder that a later run takes
for finished; a damaged model folder is refused naming the file and the fix; a resume or a reuse with other
settings is refused naming what changed."""
from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import nbformat
import pandas as pd
import pytest
import torch
from transformers import ResNetModel

from medcap_utils.atomic import DiskFullError
from medcap_utils.model_files import CHECKSUMS, CorruptModelError, verify_model_dir, write_checksums
from medcap_utils.models.lstm_captioner import LSTMCaptioner, LSTMCaptionerConfig, small_resnet_config
from medcap_utils.training import TrainConfig, fit
from medcap_utils.training.toy_run import mse_loss, toy_data, toy_model

FULL_DISK = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 2048 vs 1984")


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ---- kill while a start model is built --------------------------------------------------------------

class _Killed(KeyboardInterrupt):
    """Stands for SIGKILL: raised half-way through a save, after the first file is written."""


def _fake_build(calls: list, kill_first: bool):
    def build(out, captions=None, **kwargs):
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text("{}")  # save_pretrained writes the config first
        calls.append(out)
        if kill_first and len(calls) == 1:
            raise _Killed
        (out / "model.safetensors").write_bytes(b"weights")
    return build


@pytest.fixture
def fake_demo_blip(monkeypatch):
    """``build_demo_blip`` that is killed after writing config.json on its first call; ``load_blip`` and the
    caption reader replaced, so only the decision "reuse or build" is tested."""
    import medcap_utils.data.rocov2 as rocov2
    import medcap_utils.models.blip as blip

    calls: list = []
    monkeypatch.setattr(blip, "build_demo_blip", _fake_build(calls, kill_first=True))
    monkeypatch.setattr(blip, "load_blip", lambda path, *a, **k: ("loaded", Path(path)))
    monkeypatch.setattr(rocov2, "split_frame", lambda root, split: pd.DataFrame({"caption": ["a b"]}))
    return calls


RECIPE = {"model": None, "image_size": 32, "build": {}}


def test_kill_while_building_demo_blip_init_leaves_nothing_and_is_rebuilt(tmp_path, fake_demo_blip):
    from medcap_utils.models import blip
    from medcap_utils.training.blip import start_model

    with pytest.raises(_Killed):
        blip.load_blip(start_model(RECIPE, tmp_path / "data", tmp_path / "out"))
    assert not (tmp_path / "out" / "init").exists()  # before: init/ with config.json only, reused for good
    assert blip.load_blip(start_model(RECIPE, tmp_path / "data", tmp_path / "out")) == ("loaded",
                                                                                        tmp_path / "out" / "init")
    assert len(fake_demo_blip) == 2
    assert _names(tmp_path / "out" / "init") == [CHECKSUMS, "config.json", "model.safetensors"]
    verify_model_dir(tmp_path / "out" / "init", require_checksums=True)


def test_init_left_half_written_by_an_older_run_is_rebuilt(tmp_path, fake_demo_blip):
    from medcap_utils.training.blip import start_model

    init = tmp_path / "out" / "init"
    init.mkdir(parents=True)
    (init / "config.json").write_text("{}")  # what a kill during the old save_pretrained left
    with pytest.raises(_Killed):
        start_model(RECIPE, tmp_path / "data", tmp_path / "out")
    assert _names(init) == ["config.json"]  # the old folder is untouched by the failed rebuild
    assert start_model(RECIPE, tmp_path / "data", tmp_path / "out") == str(init)
    assert len(fake_demo_blip) == 2 and (init / "model.safetensors").exists() and (init / CHECKSUMS).exists()


def test_kill_while_writing_lstm_demo_encoder_leaves_nothing(tmp_path, monkeypatch):
    from medcap_utils.experiments.explainable_lstm_captioner import _encoder_path

    original = ResNetModel.save_pretrained

    def killed_save(self, path, *a, **k):
        Path(path).mkdir(parents=True, exist_ok=True)
        (Path(path) / "config.json").write_text("{}")
        raise _Killed

    monkeypatch.setattr(ResNetModel, "save_pretrained", killed_save)
    with pytest.raises(_Killed):
        _encoder_path({"encoder": "demo", "width": 8, "depths": [1]}, tmp_path)
    assert list(tmp_path.iterdir()) == []  # before: resnet-init-*/config.json, never rewritten
    monkeypatch.setattr(ResNetModel, "save_pretrained", original)
    path = Path(_encoder_path({"encoder": "demo", "width": 8, "depths": [1]}, tmp_path))
    assert (path / "model.safetensors").exists()
    verify_model_dir(path, require_checksums=True)


# ---- kill while a trained model, a run folder or the manifest is written ----------------------------------

def _lstm(seed: int = 0) -> LSTMCaptioner:
    torch.manual_seed(seed)
    cfg = LSTMCaptionerConfig(vocab_size=12, num_labels=3, embed_dim=8, semantic_dim=8, attention_dim=8,
                              decoder_dim=8)
    return LSTMCaptioner(cfg, ResNetModel(small_resnet_config(8, (1,))))


def test_kill_during_final_lstm_save_keeps_the_previous_model(tmp_path, monkeypatch):
    _lstm(0).save(tmp_path / "model", extra={"v": 1})

    def killed(obj, f, *a, **k):
        Path(f).write_bytes(b"PK\x03\x04 half")
        raise _Killed
    monkeypatch.setattr(torch, "save", killed)
    with pytest.raises(_Killed):
        _lstm(1).save(tmp_path / "model", extra={"v": 2})
    monkeypatch.undo()
    _, extra = LSTMCaptioner.load(tmp_path / "model")
    assert extra == {"v": 1} and _names(tmp_path) == ["model"]  # before: new config.json, torn model.pt


def test_kill_during_medcsra_save_keeps_the_previous_model(tmp_path, monkeypatch):
    from medcap_utils.models.medcsra import MedCSRA, build_medcsra, demo_resnet_config

    build_medcsra(demo_resnet_config(8), 3, classes=["A", "B", "C"]).save_pretrained(tmp_path / "m")

    def killed(obj, f, *a, **k):
        Path(f).write_bytes(b"half")
        raise _Killed
    monkeypatch.setattr(torch, "save", killed)
    with pytest.raises(_Killed):
        build_medcsra(demo_resnet_config(8), 4, classes=["A", "B", "C", "D"]).save_pretrained(tmp_path / "m")
    monkeypatch.undo()
    assert MedCSRA.from_pretrained(tmp_path / "m").classes == ["A", "B", "C"]


class _FakeBlip:
    """Stands for model and processor: save_pretrained writes config.json, then (model only) is killed."""

    def __init__(self, killed: bool):
        self.killed = killed

    def save_pretrained(self, out):
        (Path(out) / "config.json").write_text('{"new": true}')
        if self.killed:
            raise _Killed
        (Path(out) / "model.safetensors").write_bytes(b"w")


def test_kill_during_final_blip_save_is_not_taken_for_a_finished_model(tmp_path, monkeypatch):
    import medcap_utils.training.blip as bt
    from medcap_utils.training import TrainResult

    out = tmp_path / "blip"
    out.mkdir()
    result = TrainResult(history=pd.DataFrame({"epoch": [1]}))
    bt.save_trained_blip(out, _FakeBlip(False), _FakeBlip(False), result, {"train": {}})
    assert (out / CHECKSUMS).exists()
    with pytest.raises(_Killed):
        bt.save_trained_blip(out, _FakeBlip(True), _FakeBlip(False), result, {"train": {}})
    assert not (out / CHECKSUMS).exists()  # config.json and history.csv present, but not marked finished
    trained = []
    monkeypatch.setattr(bt, "train_blip_recipe", lambda recipe, data, o: trained.append(o) or ("m", "p", None))
    monkeypatch.setattr("medcap_utils.models.blip.load_blip", lambda p: ("reused", p))
    assert bt.load_or_train_demo_blip(tmp_path / "data", out) == ("m", "p")  # before: load_blip(half folder)
    assert trained == [out]


def test_kill_during_run_dir_write_keeps_the_previous_run(tmp_path, monkeypatch):
    from medcap_utils.evaluation.runfiles import read_run_dir, read_run_file, write_run_dir

    write_run_dir("r", "captions", "test", "d", {"a": "old caption"}, runs_root=tmp_path)
    real = Path.write_text

    def killed(self, *a, **k):
        if self.name == "run.json":
            raise _Killed
        return real(self, *a, **k)
    monkeypatch.setattr(Path, "write_text", killed)
    with pytest.raises(_Killed):
        write_run_dir("r", "captions", "test", "d", {"a": "new caption"}, meta={"model": "new"}, runs_root=tmp_path)
    monkeypatch.undo()
    info, run_file = read_run_dir(tmp_path / "r")
    assert read_run_file(run_file, "captions") == {"a": "old caption"}  # before: new captions, old run.json
    assert info["meta"] == {} and _names(tmp_path) == ["r"]


@pytest.fixture
def quick_repo(tmp_path, monkeypatch):
    """Three numbered notebooks; papermill and the slow provenance probes replaced (no kernel starts)."""
    import papermill

    from medcap_utils.runner import reproduce

    (tmp_path / "notebooks").mkdir()
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "demo.yaml").write_text("defaults: {profile: demo}\n")
    for name in ("00_a", "01_b", "02_c"):
        nb = nbformat.v4.new_notebook()
        cell = nbformat.v4.new_code_cell('profile = "demo"')
        cell.metadata["tags"] = ["parameters"]
        nb.cells = [cell]
        nbformat.write(nb, tmp_path / "notebooks" / f"{name}.ipynb")
    ran: list[str] = []
    monkeypatch.setattr(papermill, "execute_notebook", lambda src, dst, **k: ran.append(Path(src).name))
    for name in ("package_versions", "lock_state", "git_state"):
        monkeypatch.setattr(reproduce, name, lambda *a: {})
    monkeypatch.setattr(reproduce, "hub_state", lambda *a: {})
    return tmp_path, ran


def test_full_disk_while_writing_the_manifest_keeps_the_previous_one(quick_repo, monkeypatch):
    from medcap_utils.runner import reproduce

    root, _ = quick_repo
    assert reproduce.run("demo", root=root) == 0
    before = json.loads((root / "reports" / "manifest.json").read_text())
    real = Path.write_text

    def torn(self, text, *a, **k):  # the old in-place write: half the text, then the disk is full
        if self.name.startswith("manifest"):
            real(self, text[: len(text) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, text, *a, **k)

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(Path, "write_text", torn)
    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(OSError, match="disk full writing .*manifest.json"):
        reproduce.run("demo", root=root)
    monkeypatch.undo()
    assert json.loads((root / "reports" / "manifest.json").read_text()) == before
    assert _names(root / "reports") == ["manifest.json", "notebooks"]


def test_only_writes_a_partial_manifest_and_keeps_the_full_one(quick_repo):
    from medcap_utils.runner import reproduce

    root, ran = quick_repo
    assert reproduce.run("demo", root=root) == 0
    full = (root / "reports" / "manifest.json").read_text()
    assert reproduce.run("demo", root=root, only=["01"]) == 0
    assert (root / "reports" / "manifest.json").read_text() == full
    partial = json.loads((root / "reports" / "manifest-partial.json").read_text())
    assert [n["notebook"] for n in partial["notebooks"]] == ["01_b.ipynb"] and ran[-1] == "01_b.ipynb"


def test_only_with_a_prefix_that_matches_nothing_is_refused(quick_repo):
    from medcap_utils.runner import reproduce

    root, ran = quick_repo
    with pytest.raises(SystemExit, match="--only 99 matches no notebook"):
        reproduce.run("demo", root=root, only=["99"])
    with pytest.raises(SystemExit, match="--only 2 matches no notebook"):  # before: ran 01 and skipped "2"
        reproduce.run("demo", root=root, only=["01", "2"])
    assert ran == [] and not (root / "reports" / "manifest-partial.json").exists()


# ---- full disk during a training checkpoint ------------------------------------------------------------

def _toy_cfg(out: Path, **changes) -> TrainConfig:
    return TrainConfig(**{**dict(epochs=1, lr=1e-2, batch_size=16, seed=0, output_dir=str(out), progress=False,
                                 monitor="none"), **changes})


def test_full_disk_at_a_checkpoint_names_the_path_and_free_space_and_keeps_the_previous_one(tmp_path, monkeypatch):
    train, _ = toy_data()
    first = fit(toy_model(), train, _toy_cfg(tmp_path), mse_loss)
    ckpts = tmp_path / "checkpoints"
    assert _names(ckpts) == [f"step_{first.global_step}"]

    def full(obj, f, *a, **k):
        Path(f).write_bytes(b"PK")
        raise FULL_DISK
    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(DiskFullError, match=r"disk full writing .*tmp_step_\d+: .* bytes .* free") as err:
        fit(toy_model(), train, _toy_cfg(tmp_path, epochs=2), mse_loss)
    assert err.value.free > 0  # before: RuntimeError "[enforce fail at inline_container.cc:672] unexpected pos"
    monkeypatch.undo()
    assert _names(ckpts) == [f"step_{first.global_step}"]  # previous checkpoint intact, no torn folder
    again = fit(toy_model(), train, _toy_cfg(tmp_path, epochs=2), mse_loss)  # resumes from it
    assert again.global_step == 2 * first.global_step and list(again.history["epoch"]) == [1, 2]


# ---- damaged model folders ------------------------------------------------------------------------------

@pytest.fixture
def saved_lstm(tmp_path) -> Path:
    return _lstm().save(tmp_path / "model", extra={"vocab": ["a"]})


def test_truncated_config_json_is_named(saved_lstm):
    (saved_lstm / "config.json").write_text((saved_lstm / "config.json").read_text()[:40])
    with pytest.raises(CorruptModelError,
                       match=r"model/config.json is not valid JSON: truncated.*Fix: delete the folder"):
        LSTMCaptioner.load(saved_lstm)  # before: json.JSONDecodeError naming no file


def test_truncated_weights_are_named(saved_lstm):
    data = (saved_lstm / "model.pt").read_bytes()
    (saved_lstm / "model.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptModelError,
                       match=r"model/model.pt does not match its checksum.*bytes now.*rerun the notebook"):
        LSTMCaptioner.load(saved_lstm)


def test_overwritten_weight_bytes_of_the_same_size_are_refused(saved_lstm):
    data = bytearray((saved_lstm / "model.pt").read_bytes())
    data[-200:-100] = bytes(100)
    (saved_lstm / "model.pt").write_bytes(bytes(data))
    with pytest.raises(CorruptModelError, match="model.pt does not match its checksum"):
        LSTMCaptioner.load(saved_lstm)


def test_missing_weights_file_is_named(saved_lstm):
    (saved_lstm / "model.pt").unlink()
    with pytest.raises(CorruptModelError, match=r"model/model.pt is missing \(listed in checksums.sha256\)"):
        LSTMCaptioner.load(saved_lstm)


def _resnet_dir(path: Path, checksums: bool) -> Path:
    torch.manual_seed(0)
    ResNetModel(small_resnet_config(8, (1,))).save_pretrained(path)
    if checksums:
        write_checksums(path)
    return path


def test_overwritten_safetensors_bytes_in_a_project_folder_are_refused_by_the_hub_loader(tmp_path):
    from medcap_utils.hub import from_pretrained

    folder = _resnet_dir(tmp_path / "enc", checksums=True)
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-64:] = bytes(64)  # tensor bytes, same size: the header still parses, the weights are zeros
    weights.write_bytes(bytes(data))
    with pytest.raises(CorruptModelError, match="enc/model.safetensors does not match its checksum"):
        from_pretrained(ResNetModel, folder)  # before: loaded, with zeroed weights


def test_truncated_safetensors_and_config_without_checksums_are_named(tmp_path):
    from medcap_utils.hub import from_pretrained

    folder = _resnet_dir(tmp_path / "own", checksums=False)  # a user's folder or a hub snapshot
    assert from_pretrained(ResNetModel, folder) is not None  # no checksum file needed
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10])
    with pytest.raises(CorruptModelError, match=r"own/model.safetensors is truncated \(its tensors need"):
        from_pretrained(ResNetModel, folder)
    _resnet_dir(folder, checksums=False)
    (folder / "config.json").write_text('{"model_type": "resnet",')
    with pytest.raises(CorruptModelError, match=r"own/config.json is not valid JSON"):
        from_pretrained(ResNetModel, folder)


def test_project_folder_without_its_checksum_file_is_refused_where_completeness_is_required(tmp_path):
    folder = _resnet_dir(tmp_path / "enc", checksums=False)
    with pytest.raises(CorruptModelError, match=r"enc/checksums.sha256 is missing: the save of this folder did not "
                                                r"finish.*delete the folder"):
        verify_model_dir(folder, require_checksums=True)


def test_truncated_medcsra_head_and_msmedcap_metadata_are_named(tmp_path):
    from medcap_utils.models.medcsra import MedCSRA, build_medcsra, demo_resnet_config
    from medcap_utils.models.msmedcap import load_msmedcap

    build_medcsra(demo_resnet_config(8), 3).save_pretrained(tmp_path / "m")
    head = tmp_path / "m" / "head.pt"
    head.write_bytes(head.read_bytes()[:100])
    with pytest.raises(CorruptModelError, match="m/head.pt does not match its checksum"):
        MedCSRA.from_pretrained(tmp_path / "m")
    (tmp_path / "ms").mkdir()
    (tmp_path / "ms" / "msmedcap.json").write_text('{"variant": "msm')
    with pytest.raises(CorruptModelError, match="ms/msmedcap.json is not valid JSON"):
        load_msmedcap(tmp_path / "ms")


# ---- resume and reuse with other settings ------------------------------------------------------------

@pytest.fixture
def finished_toy_run(tmp_path) -> Path:
    train, _ = toy_data()
    fit(toy_model(), train, _toy_cfg(tmp_path), mse_loss)
    return tmp_path


@pytest.mark.parametrize("change, listed", [({"lr": 5e-2}, "lr: 0.01 -> 0.05"),
                                            ({"batch_size": 8}, "batch_size: 16 -> 8"),
                                            ({"scheduler": "cosine", "seed": 1}, "scheduler: 'none' -> 'cosine'")])
def test_resume_with_changed_settings_is_refused_naming_them(finished_toy_run, change, listed):
    from medcap_utils.training import ResumeMismatchError

    train, _ = toy_data()
    with pytest.raises(ResumeMismatchError, match="trained with other settings") as err:
        fit(toy_model(), train, _toy_cfg(finished_toy_run, epochs=2, **change), mse_loss)
    assert listed in str(err.value) and "Fix: write to a new output_dir" in str(err.value)
    assert "epochs" not in str(err.value)  # a longer run is what resuming is for
    if "seed" in change:
        assert "seed: 0 -> 1" in str(err.value)


def test_resume_compares_every_recorded_field_and_allows_the_legitimate_ones(finished_toy_run):
    from medcap_utils.training import ResumeMismatchError

    train, _ = toy_data()
    [ckpt] = (finished_toy_run / "checkpoints").iterdir()
    done = json.loads((ckpt / "loop_done").read_text())
    (ckpt / "loop_done").write_text(json.dumps({**done, "config": {**done["config"], "retired_option": "abc"}}))
    # a field the old run recorded but this TrainConfig no longer has is a difference too
    with pytest.raises(ResumeMismatchError, match="retired_option: 'abc' -> '<absent>'"):
        fit(toy_model(), train, _toy_cfg(finished_toy_run), mse_loss)
    (ckpt / "loop_done").write_text(json.dumps(done))
    resumed = fit(toy_model(), train, _toy_cfg(finished_toy_run, epochs=2, log_every=1, num_workers=0,
                                               keep_checkpoints=1, checkpoint_every_steps=100), mse_loss)
    assert list(resumed.history["epoch"]) == [1, 2]


def test_reuse_of_a_finished_blip_folder_trained_with_another_recipe_is_refused(tmp_path, monkeypatch):
    import medcap_utils.training.blip as bt

    recipe = bt.load_blip_recipe("configs/recipes/2q2t-2024.yaml", "blip_base", "demo")
    out = tmp_path / "blip"
    out.mkdir()
    (out / "config.json").write_text("{}")
    (out / "history.csv").write_text("epoch\n1\n")
    recorded = bt.recorded_settings(recipe)
    recorded["train"]["lr"] = recipe["train"].lr * 10
    recorded["recipe"]["image_size"] = 999
    (out / "train_info.json").write_text(json.dumps(recorded))
    write_checksums(out)
    monkeypatch.setattr("medcap_utils.models.blip.load_blip", lambda p: ("reused", p))
    with pytest.raises(ValueError, match=r"recipe.image_size: 999 -> \d+") as err:
        bt.load_or_train_demo_blip(tmp_path / "data", out)  # before: the old model, reused silently
    assert f"train.lr: {recipe['train'].lr * 10!r} -> {recipe['train'].lr!r}" in str(err.value)
    assert "retrain=True" in str(err.value)
    (out / "train_info.json").write_text(json.dumps(bt.recorded_settings(recipe)))
    write_checksums(out)
    assert bt.load_or_train_demo_blip(tmp_path / "data", out) == ("reused", out)


def test_reuse_of_a_finished_blip_folder_with_more_epochs_trains_on_from_its_checkpoints(tmp_path, monkeypatch):
    import medcap_utils.training.blip as bt

    recipe = bt.load_blip_recipe("configs/recipes/2q2t-2024.yaml", "blip_base", "demo")
    out = tmp_path / "blip"
    out.mkdir()
    (out / "history.csv").write_text("epoch\n1\n")
    recorded = bt.recorded_settings(recipe)
    recorded["train"].update(epochs=recipe["train"].epochs - 1, progress=not recipe["train"].progress)
    (out / "train_info.json").write_text(json.dumps(recorded))
    write_checksums(out)
    trained = []
    monkeypatch.setattr(bt, "train_blip_recipe", lambda r, data, o: trained.append(r["train"].epochs) or ("m", "p", 0))
    monkeypatch.setattr("medcap_utils.models.blip.load_blip", lambda p: ("reused", p))
    assert bt.load_or_train_demo_blip(tmp_path / "data", out) == ("m", "p")  # before: the shorter model reused
    assert trained == [recipe["train"].epochs]


@pytest.mark.parametrize("override, outcome", [({"lr": 0.5}, "refused"), ({"epochs": 99}, "trained"),
                                               ({"progress": True}, "reused")])
def test_reuse_of_a_finished_lstm_captioner_compares_the_recorded_settings(tmp_path, monkeypatch, override, outcome):
    import medcap_utils.experiments.explainable_lstm_captioner as pipe

    recipe = {"model": {"encoder": "demo", "width": 8}, "train": {"lr": 0.1, "epochs": 2}, "text": {}}
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model.pt").write_bytes(b"")
    write_checksums(tmp_path / "model")  # a finished save (the one rule reuses complete folders only)
    info = {"data_dir": str((tmp_path / "data").resolve()), "settings": pipe._settings(recipe, None)}
    monkeypatch.setattr(pipe, "load_trained", lambda d: ("model", "vocab", [], "text", info))
    monkeypatch.setattr(pipe, "train_captioner", lambda *a, **k: "trained")
    new = {**recipe, "train": {**recipe["train"], **override}}
    if outcome == "refused":
        with pytest.raises(ValueError, match=r"(?s)train.lr: 0.1 -> 0.5.*Fix: retrain=True"):
            pipe.load_or_train(tmp_path / "data", new, tmp_path)  # before: the lr=0.1 model, reused
    else:
        result = pipe.load_or_train(tmp_path / "data", new, tmp_path)
        assert (result if outcome == "trained" else result["model"]) == ("trained" if outcome == "trained" else "model")


def test_reuse_of_a_saved_medblip_variant_trained_with_another_lr_is_refused(tmp_path, monkeypatch):
    import medcap_utils.experiments.medblip_ablation as ab
    from medcap_utils.training.blip import recorded_settings

    recipe = ab.ablation_recipe("demo", width=32, epochs=1, lr=1e-3)
    (tmp_path / "full").mkdir()
    info = {"variant": "full", "settings": recorded_settings(recipe)}
    (tmp_path / "full" / "train_info.json").write_text(json.dumps(info))
    write_checksums(tmp_path / "full")  # a finished save (the one rule reuses complete folders only)
    monkeypatch.setattr("medcap_utils.models.blip.load_blip", lambda p: (torch.nn.Linear(1, 1), "proc"))
    assert ab.load_or_train_variant("full", tmp_path / "data", tmp_path, recipe)[2] == info
    with pytest.raises(ValueError,
                       match=r"(?s)full holds a variant trained with other settings.*train.lr: 0.001 -> 0.01"):
        ab.load_or_train_variant("full", tmp_path / "data", tmp_path, ab.ablation_recipe("demo", width=32, epochs=1,
                                                                                          lr=1e-2))
