"""medcap_utils.training.reuse: the one rule deciding whether a saved model folder is loaded or trained again."""
import json

import pytest

from medcap_utils.model_files import write_checksums
from medcap_utils.training.blip import load_blip_recipe, recorded_settings
from medcap_utils.training.reuse import Stale, reuse_key, should_reuse

RECIPE = "configs/recipes/2q2t-2024.yaml"


def _saved(folder, recipe) -> dict:
    """A finished folder trained with ``recipe``: weights, train_info.json, checksums written last."""
    folder.mkdir(parents=True)
    (folder / "model.bin").write_bytes(b"weights")
    settings = recorded_settings(recipe)
    (folder / "train_info.json").write_text(json.dumps(settings))
    write_checksums(folder)
    return settings


def _read(folder):
    return lambda: json.loads((folder / "train_info.json").read_text())


def test_an_unchanged_recipe_reuses(tmp_path, capsys):
    recipe = load_blip_recipe(RECIPE, "blip_base", "demo")
    _saved(tmp_path / "m", recipe)
    again = load_blip_recipe(RECIPE, "blip_base", "demo")  # resolved anew: same values, same key
    assert should_reuse(tmp_path / "m", recorded_settings(again), _read(tmp_path / "m"))
    assert "same recipe" in capsys.readouterr().out
    # display-only fields (progress, workers, output folder) do not change the weights: still reused
    shown = {**again, "train": again["train"].replace(progress=not again["train"].progress, num_workers=3)}
    assert reuse_key(recorded_settings(shown)) == reuse_key(recorded_settings(again))
    assert should_reuse(tmp_path / "m", recorded_settings(shown), _read(tmp_path / "m"))


def test_a_changed_recipe_value_retrains(tmp_path, capsys):
    recipe = load_blip_recipe(RECIPE, "blip_base", "demo")
    _saved(tmp_path / "m", recipe)
    longer = load_blip_recipe(RECIPE, "blip_base", "demo", epochs=recipe["train"].epochs + 2)
    assert longer["recipe_hash"] != recipe["recipe_hash"]  # the recipe's own hash changed with it
    assert not should_reuse(tmp_path / "m", recorded_settings(longer), _read(tmp_path / "m"))
    out = capsys.readouterr().out
    assert f"train.epochs: {recipe['train'].epochs} -> {recipe['train'].epochs + 2}" in out and "training again" in out


def test_a_changed_setting_that_decides_the_weights_is_refused_by_name(tmp_path):
    recipe = load_blip_recipe(RECIPE, "blip_base", "demo")
    _saved(tmp_path / "m", recipe)
    other = load_blip_recipe(RECIPE, "blip_base", "demo", lr=recipe["train"].lr * 10)
    with pytest.raises(ValueError, match=r"(?s)m holds a model trained with other settings.*train\.lr: .*retrain=True"):
        should_reuse(tmp_path / "m", recorded_settings(other), _read(tmp_path / "m"))
    assert not should_reuse(tmp_path / "m", recorded_settings(other), _read(tmp_path / "m"), retrain=True)


def test_a_corrupted_or_unfinished_folder_retrains(tmp_path, capsys):
    recipe = load_blip_recipe(RECIPE, "blip_base", "demo")
    _saved(tmp_path / "m", recipe)
    (tmp_path / "m" / "model.bin").write_bytes(b"weightz")  # same size, other bytes
    assert not should_reuse(tmp_path / "m", recorded_settings(recipe), _read(tmp_path / "m"))
    assert "model.bin does not match its checksum" in capsys.readouterr().out
    (tmp_path / "m" / "checksums.sha256").unlink()  # a save that never finished
    assert not should_reuse(tmp_path / "m", recorded_settings(recipe), _read(tmp_path / "m"))
    assert "did not finish" in capsys.readouterr().out
    assert not should_reuse(tmp_path / "absent", recorded_settings(recipe), _read(tmp_path / "absent"))


def test_stale_and_unrecorded_folders(tmp_path, capsys):
    recipe = load_blip_recipe(RECIPE, "blip_base", "demo")
    _saved(tmp_path / "m", recipe)

    def other_data():
        raise Stale("trained on other data")

    assert not should_reuse(tmp_path / "m", recorded_settings(recipe), other_data)
    assert "trained on other data; training again" in capsys.readouterr().out
    assert should_reuse(tmp_path / "m", recorded_settings(recipe), lambda: None)  # saved before settings were recorded


def test_demo_blip_with_another_epochs_override_trains_on(tmp_path, monkeypatch):
    """Through load_or_train_demo_blip: the recorded recipe hash differs from the one now resolved, and
    only the epochs changed, so the model is trained on (the hash alone is not refused)."""
    import medcap_utils.training.blip as bt

    recipe = bt.load_blip_recipe(RECIPE, "blip_base", "demo", epochs=1)
    _saved(tmp_path / "blip", recipe)
    trained = []
    monkeypatch.setattr(bt, "train_blip_recipe", lambda r, data, o: trained.append(r["train"].epochs) or ("m", "p", 0))
    monkeypatch.setattr("medcap_utils.models.blip.load_blip", lambda p: ("reused", p))
    assert bt.load_or_train_demo_blip(tmp_path / "data", tmp_path / "blip") == ("m", "p")
    assert trained == [bt.load_blip_recipe(RECIPE, "blip_base", "demo")["train"].epochs]
