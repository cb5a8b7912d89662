"""The papermill runner: parameters per profile, manifest, stop at the first failing notebook."""
from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from medcap_utils.runner import reproduce


def _notebook(path, params: str, body: str):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    cell = nbformat.v4.new_code_cell(params)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# t"), cell, nbformat.v4.new_code_cell(body)]
    nbformat.write(nb, path)


@pytest.fixture
def fake_repo(tmp_path):
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "demo.yaml").write_text(
        "defaults: {profile: demo, data_dir: data/demo}\n00_first: {epochs: 3}\n")
    params = 'profile: str = "demo"\ndata_dir: str = "data/demo"\nepochs: int = 1\n'
    _notebook(tmp_path / "notebooks" / "00_first.ipynb", params,
              "open('../out.txt', 'w').write(f'{profile} {data_dir} {epochs}')")
    _notebook(tmp_path / "notebooks" / "01_second.ipynb", params, "x = 1\nraise ValueError('planted failure')")
    _notebook(tmp_path / "notebooks" / "02_third.ipynb", params, "open('../third.txt', 'w').write('ran')")
    _notebook(tmp_path / "notebooks" / "scratch.ipynb", params, "raise SystemExit('unnumbered notebooks are skipped')")
    return tmp_path


def test_runner_injects_parameters_and_stops_at_first_failure(fake_repo, capsys):
    status = reproduce.run("demo", data="elsewhere", root=fake_repo)
    assert status == 1
    assert (fake_repo / "out.txt").read_text() == "demo elsewhere 3"
    assert not (fake_repo / "third.txt").exists()
    manifest = json.loads((fake_repo / "reports" / "manifest.json").read_text())
    assert manifest["status"] == "failed" and manifest["profile"] == "demo"
    assert [n["status"] for n in manifest["notebooks"]] == ["ok", "failed"]
    assert manifest["notebooks"][0]["parameters"] == {"profile": "demo", "data_dir": "elsewhere", "epochs": 3}
    assert "ValueError" in manifest["notebooks"][1]["error"] and "planted failure" in manifest["notebooks"][1]["error"]
    assert manifest["packages"]["torch"] and manifest["notebooks"][0]["wall_s"] >= 0
    assert (fake_repo / "reports" / "notebooks" / "00_first.ipynb").exists()
    assert "01_second.ipynb" in capsys.readouterr().err


def test_unknown_parameter_in_profile_fails_loudly(fake_repo):
    (fake_repo / "configs" / "demo.yaml").write_text("00_first: {epoch: 3}\n")
    with pytest.raises(SystemExit, match="epoch"):
        reproduce.run("demo", root=fake_repo, only=["00"])


def test_only_selects_notebooks(fake_repo):
    assert reproduce.run("demo", root=fake_repo, only=["02"]) == 0
    assert (fake_repo / "third.txt").read_text() == "ran"
    assert [p.name for p in reproduce.numbered_notebooks(fake_repo / "notebooks")] == [
        "00_first.ipynb", "01_second.ipynb", "02_third.ipynb"]


def test_parameters_with_equals_in_comments_are_declared(tmp_path):
    path = tmp_path / "nb.ipynb"
    _notebook(path, 'epochs: int = 0  # 0 = the recipe\'s value\nlimit = 3  # (0 = all)\n', "pass")
    assert reproduce.declared_parameters(path) == ["epochs", "limit"]


def test_every_profile_section_names_declared_parameters():
    """configs/demo.yaml and rocov2.yaml only set parameters their notebooks declare."""
    from medcap_utils.paths import repo_root

    root = repo_root()
    notebooks = {p.stem: p for p in reproduce.numbered_notebooks(root / "notebooks")}
    for profile in ("demo", "rocov2"):
        config = reproduce.load_profile(profile, root / "configs")
        for section, values in config.items():
            if section == "defaults":
                continue
            assert section in notebooks, f"{profile}.yaml: no notebook {section}"
            undeclared = set(values or {}) - set(reproduce.declared_parameters(notebooks[section]))
            assert not undeclared, f"{profile}.yaml {section}: {sorted(undeclared)}"
        for notebook in notebooks.values():
            assert {"profile", "data_dir"} <= set(reproduce.declared_parameters(notebook)), notebook.name


def _profiles() -> list[str]:
    from medcap_utils.runner.reproduce import profile_names

    return profile_names(Path(__file__).resolve().parents[1] / "configs")


PROFILES = _profiles()


def test_profiles_are_the_configs_files_less_handoff_and_claims():
    assert {"demo", "rocov2", "rocov2-smoke", "rocov2-subset"} <= set(PROFILES)
    assert not {"handoff", "claims"} & set(PROFILES)


@pytest.mark.parametrize("profile", PROFILES)
def test_every_profile_names_only_parameters_its_notebooks_declare(profile):
    from medcap_utils.runner.reproduce import load_profile, notebook_parameters, numbered_notebooks

    root = Path(__file__).resolve().parents[1]
    notebooks = numbered_notebooks(root / "notebooks")
    config = load_profile(profile, root / "configs", notebooks)
    assert config["defaults"]["profile"] in ("demo", "rocov2")  # the code path the notebooks take
    for notebook in notebooks:
        params = notebook_parameters(config, notebook, {})
        assert params["profile"] == config["defaults"]["profile"]


def test_derived_profile_merges_over_its_parent_and_keeps_its_own_reports():
    from medcap_utils.runner.reproduce import load_profile, numbered_notebooks

    root = Path(__file__).resolve().parents[1]
    smoke = load_profile("rocov2-smoke", root / "configs", numbered_notebooks(root / "notebooks"))
    assert smoke["02_blip_finetuning"]["models_2q2t"] == ["blip_base", "blip_large"]  # from rocov2
    assert smoke["02_blip_finetuning"]["epochs"] == 1  # its own
    assert smoke["reports"] == "build/rocov2-smoke/reports" and smoke["defaults"]["profile"] == "rocov2"
    subset = load_profile("rocov2-subset", root / "configs")
    assert "reports" not in subset and subset["00_data_setup"]["source"] == "hf"


def test_misspelt_section_and_unmatched_only_are_refused(tmp_path):
    from medcap_utils.runner.reproduce import load_profile, numbered_notebooks, run

    root = Path(__file__).resolve().parents[1]
    (tmp_path / "typo.yaml").write_text("defaults: {profile: demo}\n02_blip_finetunig: {epochs: 1}\n")
    with pytest.raises(SystemExit, match="unknown sections.*02_blip_finetunig"):
        load_profile("typo", tmp_path, numbered_notebooks(root / "notebooks"))
    with pytest.raises(SystemExit, match="matches no notebook"):
        run("demo", only=["99"], root=root)
