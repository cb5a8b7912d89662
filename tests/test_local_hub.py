"""The rocov2 hub ids come from the YAML files, and the stand-in cache serves each of them through
huggingface_hub's own cache lookup (HF_HOME + HF_HUB_OFFLINE=1), loaded by the project's unchanged loaders."""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from medcap_utils.hub import excluded_hub_ids, profile_hub_ids
from medcap_utils.testing.local_hub import STAND_INS, default_ids, not_stood_in, write_local_hub

REPO = Path(__file__).resolve().parents[1]
EXPECTED = [  # the list; every one is also in a YAML file or a metric constant
    "Salesforce/blip-image-captioning-base", "Salesforce/blip-image-captioning-large", "Salesforce/blip2-opt-2.7b",
    "Salesforce/instructblip-vicuna-7b", "nlpconnect/vit-gpt2-image-captioning", "microsoft/resnet-101",
    "microsoft/resnet-50", "openai/clip-vit-large-patch14", "facebook/sam-vit-base", "facebook/opt-2.7b",
    "bert-base-uncased", "openai/clip-vit-base-patch32", "microsoft/deberta-xlarge-mnli",
    "lucadiliello/BLEURT-20-D12",
]


def yaml_ids(root: Path) -> set[str]:
    """Independent reading: every org/name string that is not a repository path, plus qformer_init values."""
    ids = set()

    def walk(node, key=None):
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, k)
        elif isinstance(node, list):
            for v in node:
                walk(v, key)
        elif isinstance(node, str):
            if re.fullmatch(r"[\w.-]+/[\w.-]+", node) and not (root / node).exists() \
                    and node.split("/")[0] not in ("reports", "data", "configs", ".."):
                ids.add(node)
            elif key == "qformer_init":
                ids.add(node)

    for path in [root / "configs" / "rocov2.yaml", *(root / "configs" / "recipes").glob("*.yaml")]:
        walk(yaml.safe_load(path.read_text()))
    return ids


def test_collector_finds_every_yaml_id_and_the_metric_models():
    found = profile_hub_ids("rocov2", REPO)
    excluded = excluded_hub_ids("rocov2", REPO)
    assert yaml_ids(REPO) - set(excluded) <= set(found)
    assert set(EXPECTED) <= set(found)
    assert not any(i.startswith(("reports/", "data/", "configs/")) for i in found)
    # metric models are listed from the constants in medcap_utils.metrics, with where they are
    uses = {str(u) for u in found["microsoft/deberta-xlarge-mnli"]}
    assert "medcap_utils/metrics/bertscore.py:OFFICIAL_MODEL -> 04_decoding_experiments, 08_evaluation" in uses
    clip_uses = [u.file for u in found["openai/clip-vit-base-patch32"]]
    assert clip_uses == ["configs/rocov2.yaml", "medcap_utils/metrics/clipscore.py"]
    blip = found["Salesforce/blip-image-captioning-base"][0]
    assert (blip.file, blip.key, blip.notebooks) == ("configs/recipes/2q2t-2024.yaml", "blip_base.model",
                                                     ("02_blip_finetuning",))


def test_an_id_the_recipe_documents_as_absent_is_excluded_with_its_reason():
    excluded = excluded_hub_ids("rocov2", REPO)
    assert set(excluded) == {"facebook/sam-vit-big"}
    assert "no such hub id" in excluded["facebook/sam-vit-big"]
    assert "msmedcap-2024.yaml:authors_code.model.sam" in excluded["facebook/sam-vit-big"]
    assert "facebook/sam-vit-big" not in profile_hub_ids("rocov2", REPO)


def test_new_ids_in_a_copy_of_the_configs_are_found(tmp_path):
    shutil.copytree(REPO / "configs", tmp_path / "configs")
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "03_medblip_ablation.ipynb").write_text('{"source": "medblip-2025.yaml"}')
    recipe = tmp_path / "configs" / "recipes" / "medblip-2025.yaml"
    recipe.write_text(recipe.read_text() + "\nextra:\n  models: [acme/new-captioner]\n  qformer_init: roberta-base\n")
    profile = tmp_path / "configs" / "rocov2.yaml"
    profile.write_text(profile.read_text() + "09_report:\n  data_dir: data/elsewhere\n  judge: acme/judge-v2\n")
    # without its "no such hub id" comment, the authors' SAM id would be taken at its word
    msm = tmp_path / "configs" / "recipes" / "msmedcap-2024.yaml"
    msm.write_text(re.sub(r"(sam: facebook/sam-vit-big)\s*#.*", r"\1", msm.read_text()))
    found = profile_hub_ids("rocov2", tmp_path, metrics=False)
    assert [str(u) for u in found["acme/new-captioner"]] == [
        "configs/recipes/medblip-2025.yaml:extra.models[0] -> 03_medblip_ablation"]
    assert str(found["acme/judge-v2"][0]) == "configs/rocov2.yaml:09_report.judge"
    assert "roberta-base" in found and "data/elsewhere" not in found
    assert "facebook/sam-vit-big" in found and excluded_hub_ids("rocov2", tmp_path) == {}
    assert "microsoft/deberta-xlarge-mnli" not in found  # metrics=False


def test_every_profile_id_has_a_stand_in_or_a_stated_reason():
    ids = set(profile_hub_ids("rocov2", REPO))
    skipped = not_stood_in()
    assert set(default_ids()) | set(skipped) == ids
    assert set(default_ids()) <= set(STAND_INS)
    try:
        import bleurt_pytorch  # noqa: F401
    except Exception:
        assert "bleurt-pytorch" in skipped["lucadiliello/BLEURT-20-D12"]


def test_unknown_id_is_refused_by_name(tmp_path):
    with pytest.raises(KeyError, match="acme/unknown-model"):
        write_local_hub(tmp_path, ["microsoft/resnet-50", "acme/unknown-model"])
    assert not (tmp_path / "hub" / "models--microsoft--resnet-50").exists()  # nothing half-written


@pytest.fixture(scope="module")
def hf_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("hf_home")
    write_local_hub(home)
    return home


def etag(data: bytes, lfs: bool) -> str:
    return hashlib.sha256(data).hexdigest() if lfs else hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def test_cache_has_the_hub_layout(hf_home):
    cache = hf_home / "hub"
    repos = sorted(p.name for p in cache.iterdir() if p.name.startswith("models--"))
    assert repos == sorted("models--" + i.replace("/", "--") for i in default_ids())
    for repo in repos:
        rev = (cache / repo / "refs" / "main").read_text()
        assert re.fullmatch(r"[0-9a-f]{40}", rev)
        snap = cache / repo / "snapshots" / rev
        files = [p for p in snap.rglob("*") if not p.is_dir()]
        names = {p.relative_to(snap).as_posix() for p in files}
        assert {"config.json", "model.safetensors"} <= names, repo
        assert not any(n.endswith((".bin", ".h5", ".msgpack")) for n in names)
        for p in files:
            assert p.is_symlink() and not os.path.isabs(os.readlink(p)), p
            blob = p.resolve()
            assert blob.parent == (cache / repo / "blobs").resolve()
            assert blob.name == etag(blob.read_bytes(), p.name.endswith(".safetensors"))


def test_stand_ins_keep_what_the_project_reads(hf_home):
    def snap_json(repo_id, name):
        folder = hf_home / "hub" / ("models--" + repo_id.replace("/", "--"))
        return json.loads((folder / "snapshots" / (folder / "refs" / "main").read_text() / name).read_text())

    for rid in ("microsoft/resnet-50", "microsoft/resnet-101"):
        cfg = snap_json(rid, "config.json")
        assert cfg["architectures"] == ["ResNetForImageClassification"] and cfg["layer_type"] == "bottleneck"
        assert len(cfg["hidden_sizes"]) == 4
    blip = snap_json("Salesforce/blip-image-captioning-base", "config.json")
    assert (blip["text_config"]["vocab_size"], blip["text_config"]["bos_token_id"]) == (30524, 30522)
    assert snap_json("Salesforce/blip-image-captioning-large", "processor_config.json")["image_processor"]["size"] == \
        {"height": 384, "width": 384}
    assert snap_json("microsoft/deberta-xlarge-mnli", "config.json")["num_hidden_layers"] >= 40  # bert_score's layer
    bert = snap_json("bert-base-uncased", "config.json")
    assert (bert["hidden_size"], bert["intermediate_size"], bert["vocab_size"]) == (768, 3072, 30522)
    assert snap_json("Salesforce/blip2-opt-2.7b", "config.json")["num_query_tokens"] == 32


def test_same_seed_same_bytes_other_seed_other_weights(tmp_path):
    ids = ["microsoft/resnet-50", "facebook/opt-2.7b"]
    a, b, c = (write_local_hub(tmp_path / n, ids, seed=s) for n, s in (("a", 0), ("b", 0), ("c", 1)))
    for i in ids:
        assert a[i].name == b[i].name  # revision = hash of (path, etag) pairs
        assert {p.name: os.readlink(p) for p in a[i].iterdir()} == {p.name: os.readlink(p) for p in b[i].iterdir()}
        assert os.readlink(a[i] / "model.safetensors") != os.readlink(c[i] / "model.safetensors")
        assert os.readlink(a[i] / "config.json") == os.readlink(c[i] / "config.json")


LOAD_SCRIPT = textwrap.dedent("""
    import json, numpy as np, torch
    from huggingface_hub import try_to_load_from_cache
    from medcap_utils.models.blip import load_blip, image_size_of
    from medcap_utils.models.blip2 import load_blip2, blip2_inputs
    from medcap_utils.models.vit_gpt2 import load_vit_gpt2
    from medcap_utils.models.medcsra import load_resnet_backbone, MedCSRA
    from medcap_utils.models.lstm_captioner import load_visual_encoder
    import medcap_utils.models.msmedcap as M
    import medcap_utils.models.msmedcap_parts as P
    from medcap_utils.metrics.clipscore import load_clip
    from medcap_utils.metrics.bertscore import bertscore
    R = {}
    imgs = list(np.random.default_rng(0).integers(0, 256, (2, 48, 48, 3), dtype=np.uint8))
    R["where"] = try_to_load_from_cache("Salesforce/blip-image-captioning-base", "config.json")
    m, p = load_blip("Salesforce/blip-image-captioning-base")
    pv = p(images=imgs, return_tensors="pt")["pixel_values"]
    R["blip"] = [type(m).__name__, image_size_of(p), list(pv.shape),
                 m.generate(pixel_values=pv, max_new_tokens=4).tolist(), len(p.tokenizer)]
    for name, inst in (("blip2", False), ("instructblip", True)):
        mid = "Salesforce/instructblip-vicuna-7b" if inst else "Salesforce/blip2-opt-2.7b"
        m, p = load_blip2(mid, instruct=inst)
        b = blip2_inputs(m, p, imgs, captions=["a chest x-ray", "axial ct"])
        q = getattr(p, "qformer_tokenizer", None)
        R[name] = [type(m).__name__, int((b["input_ids"] == m.config.image_token_id).sum(1)[0]),
                   float(m(**b).loss), type(q).__name__ if q else None, len(q) if q else None]
    m, ip, tok = load_vit_gpt2()
    R["vit_gpt2"] = [type(m).__name__,
                     list(m.generate(pixel_values=ip(images=imgs, return_tensors="pt")["pixel_values"],
                                     max_new_tokens=3).shape)]
    bb = load_resnet_backbone("microsoft/resnet-101")
    det = MedCSRA(bb, num_classes=5)
    R["resnet101"] = [type(bb).__name__, bb.config.architectures, det.channels,
                      list(det(torch.zeros(1, 3, 224, 224)).logits.shape)]
    enc = load_visual_encoder("microsoft/resnet-50")
    R["resnet50"] = [type(enc).__name__, list(enc(torch.zeros(1, 3, 224, 224)).last_hidden_state.shape)]
    q = dict(hidden_size=768, num_hidden_layers=1, num_attention_heads=12, intermediate_size=3072,
             cross_attention_frequency=1, max_position_embeddings=512)
    model = M.assemble_msmedcap("msmedcap", settings=M.demo_settings(num_query_tokens=4) | {"qformer": q})
    missing = P.init_branch_from_bert(model.branches["clip"], "bert-base-uncased")
    R["msmedcap"] = [{k: type(v).__name__ for k, v in model.encoders.items()}, type(model.language_model).__name__,
                     sorted({k.split(".")[3] for k in missing})]
    clip, proc = load_clip("openai/clip-vit-base-patch32", device="cpu")
    R["clip"] = [type(clip).__name__, proc.image_processor.crop_size["height"]]
    s = bertscore(["a chest x-ray"], ["chest radiograph"], device="cpu")
    R["bertscore"] = [s["num_layers"], float(s["f1"][0])]
    print("RESULT" + json.dumps(R))
""")


def test_project_loaders_read_the_stand_ins_through_hf_home(hf_home):
    env = {**os.environ, "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    env.pop("HF_HUB_CACHE", None)
    out = subprocess.run([sys.executable, "-c", LOAD_SCRIPT], env=env, cwd=REPO, capture_output=True, text=True,
                         timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    r = json.loads(out.stdout.split("RESULT", 1)[1])
    assert r["where"].startswith(str(hf_home / "hub" / "models--Salesforce--blip-image-captioning-base" / "snapshots"))
    cls, size, shape, generated, vocab = r["blip"]
    assert (cls, size, shape, vocab) == ("BlipForConditionalGeneration", 384, [2, 3, 384, 384], 30522)
    assert len(generated) == 2 and len(generated[0]) > 1 and generated[0][0] == 30522  # [DEC] then tokens
    assert r["blip2"][:2] == ["Blip2ForConditionalGeneration", 32] and r["blip2"][2] > 0
    assert r["instructblip"][:2] == ["InstructBlipForConditionalGeneration", 32]
    assert r["instructblip"][3:] == ["BertTokenizer", 30523]  # BERT + [DEC], not the LM's tokenizer
    assert r["vit_gpt2"][0] == "VisionEncoderDecoderModel" and r["vit_gpt2"][1][0] == 2
    assert r["resnet101"][:2] == ["ResNetModel", ["ResNetForImageClassification"]]
    assert r["resnet101"][3] == [1, 5]
    assert r["resnet50"] == ["ResNetModel", [1, r["resnet101"][2], 7, 7]]  # stride 32: 7x7 at 224 px
    assert r["msmedcap"][:2] == [{"clip": "CLIPVisionModel", "sam": "SamVisionModel"}, "OPTForCausalLM"]
    assert r["msmedcap"][2] == ["crossattention"]  # every other Q-Former tensor of layer 0 came from BERT
    assert r["clip"] == ["CLIPModel", 224]
    assert r["bertscore"][0] == 40 and 0 < r["bertscore"][1] <= 1
