"""The one recipe reader (medcap_utils.training.recipe) and the profile checks of reproduce.load_profile (issue 14).

Bad configurations are written by editing a shipped recipe's text (one replacement, so the rest of the file
stays real) or as a few lines of YAML, and read through the public readers the notebooks call. The
module imports no medcap_utils code at top level, so the same cases can be run against older code.

``fixtures/recipes_before_i14.json`` holds what the five old readers returned for every shipped recipe x
profile x variant; it was produced once on main at 721b970 (before this reader) by calling
``load_blip_recipe`` / ``concept_detection.load_recipe`` / ``msmedcap_experiment.load_recipe`` /
``lstm_captioner_pipeline.load_recipe`` for the keys listed in it and writing the results as JSON
(TrainConfig as ``{"__TrainConfig__": cfg.to_dict()}``).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "configs" / "recipes"
SNAPSHOT = Path(__file__).with_name("fixtures") / "recipes_before_i14.json"


def call(kind: str, path: Path, arg=None, variant=None):
    """The public reader of one recipe kind (the names notebooks and tests call)."""
    if kind == "blip":
        from medcap_utils.training.blip import load_blip_recipe
        model, profile = arg
        return load_blip_recipe(path, model, profile, variant)
    if kind == "medcsra":
        from medcap_utils.experiments.concept_detection_medcsra import load_recipe
        return load_recipe(path, arg)
    if kind == "msmedcap":
        from medcap_utils.experiments.msmedcap import load_recipe
        return load_recipe(path, arg)
    if kind == "lstm":
        from medcap_utils.experiments.explainable_lstm_captioner import load_recipe
        return load_recipe(path, arg)
    if kind == "train_yaml":
        from medcap_utils.training import TrainConfig
        return TrainConfig.from_yaml(path, arg)
    raise ValueError(kind)


BASE = ("blip_base", "rocov2")
#: id -> (recipe file or YAML text, (replace, by) or None, kind, arg, variant, message the error must match)
BAD_RECIPES = {
    "float_as_quoted_string": ("2q2t-2024.yaml", ("lr: 1.0e-5", 'lr: "1e-5"'), "blip", BASE, None,
                               r"2q2t-2024\.yaml: blip_base\.train\.lr: expected float, found '1e-5' "
                               r"\(str\).*unquoted"),
    "int_given_float": ("2q2t-2024.yaml", ("epochs: 15", "epochs: 1.5"), "blip", BASE, None,
                        r"blip_base\.train\.epochs: expected int, found 1\.5 \(float\)"),
    "bool_given_string": ("2q2t-2024.yaml", ("freeze_vision: false", 'freeze_vision: "yes"'), "blip", BASE, None,
                          r"blip_base\.freeze_vision: expected bool, found 'yes'"),
    "unknown_key_model_section": ("2q2t-2024.yaml", ("image_size: 224 ", "imagesize: 224 "), "blip", BASE, None,
                                  r"2q2t-2024\.yaml: blip_base\.imagesize: unknown key"),
    "unknown_key_train": ("2q2t-2024.yaml", ("grad_accum: 1", "grad_acum: 1"), "blip", BASE, None,
                          r"2q2t-2024\.yaml: blip_base\.train\.grad_acum: unknown key"),
    "unknown_key_data": ("medcsra-2025.yaml", ("min_count: 1 ", "min_cout: 1 "), "medcsra", "paper", None,
                         r"medcsra-2025\.yaml: paper\.data\.min_cout: unknown key"),
    "unknown_key_in_demo_layer": ("2q2t-2024.yaml", ("    log_every: 5", "    log_evry: 5"), "blip",
                                  ("blip_base", "demo"), None, r"2q2t-2024\.yaml: demo\.train\.log_evry: unknown key"),
    "missing_train_section": ("blip_x:\n  model: null\n  image_size: 64\n", None, "blip", ("blip_x", "rocov2"), None,
                              r"blip_x\.train: required mapping \(TrainConfig\) is missing"),
    "train_without_epochs": ("blip_x:\n  train: {lr: 1.0e-5, batch_size: 4}\n", None, "blip", ("blip_x", "rocov2"),
                             None, r"blip_x\.train\.epochs: required int is missing"),
    "unknown_variant": ("medblip-2025.yaml", None, "blip", ("blip", "rocov2"), "decoder_onyl",
                        r"medblip-2025\.yaml: variants\.decoder_onyl: unknown variant"),
    "authors_code_variant_missing": ("medblip-2025.yaml", None, "blip", ("blip", "rocov2"), "authors_code",
                                     r"medblip-2025\.yaml: authors_code: variant 'authors_code' asked for"),
    "unknown_profile": ("xai-lstm-2021.yaml", None, "lstm", "dmeo", None,
                        r"xai-lstm-2021\.yaml: profile: expected one of \['demo', 'rocov2'\], found 'dmeo'"),
    "unknown_profile_section": ("medcsra-2025.yaml", ("\ndemo:", "\ndmeo:"), "medcsra", "paper", None,
                                r"medcsra-2025\.yaml: dmeo: unknown section"),
    "unknown_model_section": ("2q2t-2024.yaml", None, "blip", ("blip_bsae", "rocov2"), None,
                              r"blip_bsae: no such section; model sections: \['blip_base', 'blip_large'\]"),
    "bad_choice_in_train": ("2q2t-2024.yaml", ("scheduler: step ", "scheduler: steps "), "blip", BASE, None,
                            r"2q2t-2024\.yaml: blip_base\.train: TrainConfig\.scheduler='steps'"),
    "quoted_float_lstm_model": ("xai-lstm-2021.yaml", ("dropout: 0.5 ", 'dropout: "0.5" '), "lstm", "rocov2", None,
                                r"paper\.model\.dropout: expected float or null, found '0\.5'"),
    "generate_key_missing": ("msmedcap-2024.yaml", ("    length_penalty: 1.2 ", "    "), "msmedcap", "paper", None,
                             r"msmedcap-2024\.yaml: paper\.decoding\.length_penalty: required float is missing"),
    "int_given_float_msmedcap_stage": ("msmedcap-2024.yaml", ("epochs: 3                           # Sec. 3.1",
                                                              "epochs: 2.5 # Sec. 3.1"), "msmedcap", "paper", None,
                                       r"paper\.stage1\.train\.epochs: expected int, found 2\.5"),
    "train_yaml_quoted_float": ("model:\n  train: {lr: '1e-3'}\n", None, "train_yaml", "model.train", None,
                                r"model\.train\.lr: expected float, found '1e-3'"),
}


def write_case(tmp_path: Path, source: str, edit) -> Path:
    """The recipe of one case under ``tmp_path`` (a shipped file with one replacement, or the given text)."""
    if source.endswith(".yaml"):
        text = (RECIPES / source).read_text()
        if edit:
            assert edit[0] in text, edit
            text = text.replace(edit[0], edit[1], 1)
        path = tmp_path / source
    else:
        text, path = source, tmp_path / "recipe.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("case", sorted(BAD_RECIPES))
def test_bad_recipe_is_refused_naming_file_key_type_and_value(case, tmp_path):
    from medcap_utils.training.recipe import RecipeError

    source, edit, kind, arg, variant, message = BAD_RECIPES[case]
    path = write_case(tmp_path, source, edit)
    with pytest.raises(RecipeError, match=message) as error:
        call(kind, path, arg, variant)
    assert str(path) in str(error.value) or "overrides" in str(error.value)
    assert isinstance(error.value, ValueError)


def test_unquoted_1e_minus_3_is_a_float_and_the_quoted_form_is_text(tmp_path):
    """PyYAML alone gives the string '1e-3' (YAML 1.1); the recipe loader reads it as 0.001 (YAML 1.2)."""
    from medcap_utils.training.recipe import load_yaml

    path = write_case(tmp_path, "2q2t-2024.yaml", ("lr: 1.0e-5", "lr: 1e-3"))
    recipe = call("blip", path, BASE)
    assert recipe["train"].lr == 0.001 and isinstance(recipe["train"].lr, float)
    (tmp_path / "n.yaml").write_text("a: 1e-3\nb: -2E+2\nc: '1e-3'\nd: 1e3x\ne: 12\n")
    assert load_yaml(tmp_path / "n.yaml") == {"a": 0.001, "b": -200.0, "c": "1e-3", "d": "1e3x", "e": 12}


def test_an_int_is_widened_for_a_float_field(tmp_path):
    path = write_case(tmp_path, "2q2t-2024.yaml", ("label_smoothing: 0.1 ", "label_smoothing: 0 "))
    assert call("blip", path, BASE)["label_smoothing"] == 0.0


# ------------------------------------------------------------------------ same values as the old readers

def _snapshot_keys():
    return sorted(json.loads(SNAPSHOT.read_text()))


def _resolve(key: str):
    kind, file, *rest = key.split("|")
    if kind == "blip":
        model, profile, variant = rest
        return call("blip", RECIPES / file, (model, profile), None if variant == "None" else variant)
    return call(kind, RECIPES / file, rest[0])


def _plain(value):
    from medcap_utils.training import TrainConfig

    if isinstance(value, TrainConfig):
        return {"__TrainConfig__": json.loads(json.dumps(value.to_dict()))}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return json.loads(json.dumps(value))


def _assert_same(old, new, where):
    """Every value the old reader gave is given again; train mappings compared as whole TrainConfigs."""
    from medcap_utils.training import TrainConfig

    if isinstance(old, dict) and "__TrainConfig__" in old:
        old_cfg = TrainConfig.from_dict(old["__TrainConfig__"])
        new_cfg = TrainConfig.from_dict(new.get("__TrainConfig__", new))
        assert new_cfg.recipe_hash, where
        assert old_cfg == new_cfg.replace(recipe_hash=None), where
    elif isinstance(old, dict) and set(old) >= {"epochs", "lr"} and "train" in where.split(".")[-1:]:
        assert TrainConfig.from_dict(old) == TrainConfig.from_dict(new).replace(recipe_hash=None), where
    elif isinstance(old, dict):
        for key in old:
            assert key in new, f"{where}.{key} missing"
            _assert_same(old[key], new[key], f"{where}.{key}")
    else:
        assert old == new, where


@pytest.mark.parametrize("key", _snapshot_keys())
def test_resolved_values_equal_the_old_readers(key):
    from medcap_utils.training.recipe import merge

    old = json.loads(SNAPSHOT.read_text())
    new = _plain(_resolve(key))
    if key == "msmedcap|msmedcap-2024.yaml|authors_code":
        # the old reader returned this partial section raw (unusable: no stage1, no generate); now it is
        # layered over paper like every other variant
        expected = merge(old["msmedcap|msmedcap-2024.yaml|paper"], old[key])
        expected["stage2"]["train"] = {**old["msmedcap|msmedcap-2024.yaml|paper"]["stage2"]["train"], "epochs": 5}
        _assert_same(expected, new, key)
    elif key == "msmedcap|msmedcap-2024.yaml|demo":
        # issue 17: notebook 06's parameters no longer override the recipe; the stage-2 values it ran with
        # (2 epochs, batch 32) moved into the demo section, everything else is unchanged
        expected = json.loads(json.dumps(old[key]))
        expected["stage2"]["train"].update(epochs=2, batch_size=32)
        _assert_same(expected, new, key)
    elif key.startswith("blip|2q2t-2024.yaml|blip_large|demo|"):
        # issue 17: the demo BLIP-large got its own size (demo.per_model.blip_large); before, it was built as the
        # demo base. Everything else is as the old reader gave it.
        import yaml

        per_model = yaml.safe_load((RECIPES / "2q2t-2024.yaml").read_text())["demo"]["per_model"]["blip_large"]
        assert set(per_model) == {"build"}
        _assert_same(merge(old[key], per_model), new, key)
    elif key.startswith("blip|medblip-2025.yaml|blip|demo|"):
        # issue 17 changed MedBLIP's demo section on purpose: it starts from the pretrained stand-in (no demo BLIP
        # to build) and fine-tunes it with its own settings; everything else resolves as before
        changed = ("model", "build", "train", "recipe_hash")
        _assert_same({k: v for k, v in old[key].items() if k not in changed},
                     {k: v for k, v in new.items() if k not in changed}, key)
        assert new["model"] == "models/standins/blip-captioning-general" and new["build"] == {}
        import yaml

        demo_train = yaml.safe_load((RECIPES / "medblip-2025.yaml").read_text())["demo"]["train"]
        if key.endswith("|zero_shot"):
            demo_train["epochs"] = 0  # the variant's own override: the stand-in as it is
        assert {k: new["train"]["__TrainConfig__"][k] for k in demo_train} == demo_train  # the demo section's own
    else:
        _assert_same(old[key], new, key)
    if key.startswith("lstm"):
        assert set(new) == set(old[key])  # notebook 07 tabulates every section: nothing added at the top


# ----------------------------------------------------------------------------------------------- hash

def test_recipe_hash_is_stable_changes_with_values_and_reaches_every_train_config(tmp_path):
    from medcap_utils.experiments.msmedcap import load_recipe as msmedcap_recipe
    from medcap_utils.training.blip import load_blip_recipe

    path = RECIPES / "2q2t-2024.yaml"
    a, b = load_blip_recipe(path, "blip_base", "demo"), load_blip_recipe(path, "blip_base", "demo")
    assert re.fullmatch(r"[0-9a-f]{64}", a["recipe_hash"]) and a["recipe_hash"] == b["recipe_hash"]
    assert a["train"].recipe_hash == a["recipe_hash"] and a["train"].to_dict()["recipe_hash"] == a["recipe_hash"]
    assert load_blip_recipe(path, "blip_base", "rocov2")["recipe_hash"] != a["recipe_hash"]
    assert load_blip_recipe(path, "blip_base", "demo", epochs=3)["recipe_hash"] != a["recipe_hash"]
    # a comment or an explicit default does not change the values, so not the hash
    copy = tmp_path / "2q2t.yaml"
    copy.write_text(path.read_text().replace("grad_accum: 1", "grad_accum: 1  # explicit default"))
    assert load_blip_recipe(copy, "blip_base", "demo")["recipe_hash"] == a["recipe_hash"]
    ms = msmedcap_recipe(RECIPES / "msmedcap-2024.yaml", "demo")
    assert ms["stage1"]["train"]["recipe_hash"] == ms["stage2"]["train"]["recipe_hash"] == ms["recipe_hash"]


def test_a_written_recipe_hash_is_refused(tmp_path):
    from medcap_utils.training.recipe import RecipeError

    path = write_case(tmp_path, "2q2t-2024.yaml", ("grad_accum: 1", "recipe_hash: abc"))
    with pytest.raises(RecipeError, match=r"blip_base\.train\.recipe_hash: unknown key"):
        call("blip", path, BASE)


# --------------------------------------------------------------------------------------------- profiles

def _load(tmp_path: Path, text: str):
    from medcap_utils.runner.reproduce import load_profile, numbered_notebooks

    (tmp_path / "p.yaml").write_text(text)
    return load_profile("p", tmp_path, numbered_notebooks(ROOT / "notebooks"))


#: id -> (profile text, message the SystemExit must match)
BAD_PROFILES = {
    "misspelt_notebook_section": ("defaults: {profile: demo}\n02_blip_finetunig: {epochs: 1}\n",
                                  r"p\.yaml: unknown sections \['02_blip_finetunig'\]"),
    "typo_in_defaults": ("defaults: {profile: demo, data_dri: data/demo}\n",
                         r"p\.yaml: defaults\.data_dri: not a parameter of any notebook"),
    "parameter_unknown_to_that_notebook": ("05_concept_detection_medcsra: {stage1_epochs: 1}\n",
                                           r"p\.yaml: 05_concept_detection_medcsra\.stage1_epochs: not a parameter "
                                           r"of 05_concept_detection_medcsra\.ipynb"),
    "wrong_type_notebook_parameter": ("02_blip_finetuning: {epochs: '3'}\n",
                                      r"p\.yaml: 02_blip_finetuning\.epochs: expected int \(parameter of "
                                      r"02_blip_finetuning\.ipynb\), found '3' \(str\)"),
    "bool_for_int_parameter": ("03_medblip_ablation: {epochs: true}\n",
                               r"03_medblip_ablation\.epochs: expected int.*found True"),
    "float_for_int_parameter": ("07_explainable_lstm_captioner: {epochs: 1.5}\n",
                                r"07_explainable_lstm_captioner\.epochs: expected int.*found 1\.5"),
    "wrong_type_in_defaults": ("defaults: {profile: demo, data_dir: 3}\n",
                               r"defaults\.data_dir: expected str \(parameter of 00_data_setup\.ipynb\), found 3"),
    "notebook_section_not_a_mapping": ("02_blip_finetuning: 3\n",
                                       r"02_blip_finetuning: expected a mapping of parameters, found 3"),
}


@pytest.mark.parametrize("case", sorted(BAD_PROFILES))
def test_bad_profile_is_refused_naming_file_key_and_type(case, tmp_path):
    text, message = BAD_PROFILES[case]
    with pytest.raises(SystemExit, match=message):
        _load(tmp_path, text)


def test_profile_types_that_fit(tmp_path):
    config = _load(tmp_path, "defaults: {profile: demo}\n03_medblip_ablation: {lr: 1, warmup_steps: 0}\n"
                             "05_concept_detection_medcsra: {epochs: 2}\n06_msmedcap: {variants: [blip2]}\n")
    assert config["03_medblip_ablation"]["lr"] == 1  # an int fits a float parameter
    assert _load(tmp_path, "03_medblip_ablation: {lr: 1e-3}\n")["03_medblip_ablation"]["lr"] == 0.001


def test_a_derived_profile_is_checked_file_by_file(tmp_path):
    (tmp_path / "parent.yaml").write_text("defaults: {profile: rocov2}\n")
    with pytest.raises(SystemExit, match=r"p\.yaml: 02_blip_finetuning\.epoch: not a parameter"):
        _load(tmp_path, "extends: parent\n02_blip_finetuning: {epoch: 1}\n")


@pytest.mark.parametrize("profile", ["demo", "rocov2", "rocov2-subset", "rocov2-smoke"])
def test_shipped_profiles_load(profile, tmp_path):
    from medcap_utils.runner.reproduce import load_profile, numbered_notebooks

    config = load_profile(profile, ROOT / "configs", numbered_notebooks(ROOT / "notebooks"))
    assert config["defaults"]["profile"] in ("demo", "rocov2")


def test_every_shipped_recipe_reads_under_every_profile():
    """All sections x profiles x variants the notebooks can ask for resolve (the snapshot covers the same)."""
    keys = _snapshot_keys()
    assert len(keys) == 30 and len({k.split("|")[1] for k in keys}) == 6


def test_the_demo_per_model_layer_sizes_blip_large_and_changes_nothing_else():
    """Seed 000's base vs large in the demo (issue 17): the 2Q2T demo section holds both models' settings and
    ``demo.per_model.blip_large`` only their size, so the two resolved recipes differ in the build alone."""
    from medcap_utils.training.blip import load_blip_recipe

    base = load_blip_recipe(RECIPES / "2q2t-2024.yaml", "blip_base", "demo")
    large = load_blip_recipe(RECIPES / "2q2t-2024.yaml", "blip_large", "demo")
    differ = {k for k in base if k not in ("train", "recipe_hash") and base[k] != large[k]}
    assert differ == {"build"}
    assert {k for k in base["build"] if base["build"][k] != large["build"][k]} == {"vision_hidden", "vision_layers"}
    assert large["build"]["vision_hidden"] > base["build"]["vision_hidden"]
    assert large["build"]["vision_layers"] > base["build"]["vision_layers"]
    strip = {"recipe_hash"}
    assert ({k: v for k, v in base["train"].to_dict().items() if k not in strip}
            == {k: v for k, v in large["train"].to_dict().items() if k not in strip})
    # the layer is the demo's only: the rocov2 large recipe has no build
    assert load_blip_recipe(RECIPES / "2q2t-2024.yaml", "blip_large", "rocov2")["build"] == {}


def test_a_per_model_layer_naming_no_model_section_or_a_bad_key_is_refused(tmp_path):
    from medcap_utils.training.blip import load_blip_recipe
    from medcap_utils.training.recipe import RecipeError

    text = (RECIPES / "2q2t-2024.yaml").read_text()
    wrong_model = tmp_path / "wrong_model.yaml"
    wrong_model.write_text(text.replace("    blip_large:               # as BLIP-large", "    blip_huge:  # as"))
    with pytest.raises(RecipeError, match=r"demo\.per_model: expected a mapping of model sections.*blip_huge"):
        load_blip_recipe(wrong_model, "blip_base", "demo")
    wrong_key = tmp_path / "wrong_key.yaml"
    wrong_key.write_text(text.replace("build: {vision_hidden: 192", "biuld: {vision_hidden: 192"))
    with pytest.raises(RecipeError, match=r"demo\.per_model\.blip_large\.biuld: unknown key"):
        load_blip_recipe(wrong_key, "blip_large", "demo")
