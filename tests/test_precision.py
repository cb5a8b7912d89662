"""Precision by device, inference dtype, memory estimates and presets (medcap_utils.device, issue 12).

No GPU here or in CI: GPUs are faked by monkeypatching what torch reports (capability, total and free memory,
and ``is_bf16_supported``, which a T4 answers True through emulation).
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from medcap_utils import device as dev
from medcap_utils.device import GIB, DeviceInfo, inference_dtype, resolve_mixed_precision
from medcap_utils.memory import activation_bytes_per_image, fits_device, parameter_count, plan_batch, static_train_bytes
from medcap_utils.runner.bench_setup import blip_config
from medcap_utils.training import TrainConfig, enable_gradient_checkpointing, fit
from medcap_utils.training.toy_run import mse_loss, toy_data, toy_model

REPO = Path(__file__).resolve().parents[1]


def fake_gpu(monkeypatch, name: str, capability: tuple[int, int], total_gib: float, free_gib: float | None = None):
    total = int(total_gib * GIB)
    free = total if free_gib is None else int(free_gib * GIB)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # what a T4 says, too
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=None: capability)
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda index=None: SimpleNamespace(name=name, total_memory=total))
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda index=None: (free, total))


@pytest.fixture
def a100(monkeypatch):
    fake_gpu(monkeypatch, "NVIDIA A100-SXM4-40GB", (8, 0), 40)
    return dev.device_info()


@pytest.fixture
def t4(monkeypatch):
    fake_gpu(monkeypatch, "Tesla T4", (7, 5), 15)
    return dev.device_info()


def instructblip_7b_config():
    """Salesforce/instructblip-vicuna-7b's config.json written out: the default InstructBLIP vision (EVA ViT-g,
    1408 wide, 39 layers) and Q-Former (BERT-base, cross-attention every 2nd layer), Vicuna-7B (LLaMA) text."""
    from transformers import InstructBlipConfig, LlamaConfig

    llama = LlamaConfig(vocab_size=32001, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                        num_attention_heads=32, max_position_embeddings=2048, tie_word_embeddings=False)
    return InstructBlipConfig(text_config=llama.to_dict(), num_query_tokens=32)


# ----------------------------------------------------------------------------------------------- precision
def test_a100_auto_is_bf16_and_keeps_an_explicit_choice(a100):
    assert a100.capability == (8, 0) and a100.bf16
    assert resolve_mixed_precision("auto", a100).value == "bf16"
    assert resolve_mixed_precision("fp16", a100).value == "fp16"
    assert resolve_mixed_precision("no", a100).value == "no"


def test_t4_gets_fp16_even_though_torch_says_bf16_is_supported(t4, capsys):
    assert torch.cuda.is_bf16_supported()  # the trap: emulated bf16 on cc 7.5
    auto = resolve_mixed_precision("auto", t4)
    assert auto.value == "fp16" and auto.autocast_dtype == torch.float16
    asked = resolve_mixed_precision("bf16", t4)
    assert asked.value == "fp16" and asked.changed
    printed = capsys.readouterr().out
    assert "bf16" in printed and "7.5" in printed and "fp16" in printed and "GradScaler" in printed


def test_pre_volta_gpu_runs_fp32_on_auto(monkeypatch):
    fake_gpu(monkeypatch, "Tesla P4", (6, 1), 8)
    assert resolve_mixed_precision("auto", verbose=False).value == "no"


@pytest.mark.parametrize("asked", ["auto", "bf16", "fp16", "no"])
def test_cpu_always_resolves_to_fp32_with_a_message(asked, capsys):
    cpu = dev.device_info("cpu")
    result = resolve_mixed_precision(asked, cpu)
    assert result.value == "no"
    assert ("fp32" in capsys.readouterr().out) == (asked != "no")


def test_cpu_bf16_only_when_explicitly_allowed():
    cpu = dev.device_info("cpu")
    assert resolve_mixed_precision("bf16", cpu, allow_cpu_autocast=True).value == "bf16"
    assert resolve_mixed_precision("auto", cpu, allow_cpu_autocast=True).value == "no"


def test_inference_dtype_is_fp16_on_any_gpu_and_fp32_on_cpu(monkeypatch):
    assert inference_dtype("cpu") == torch.float32
    fake_gpu(monkeypatch, "Tesla T4", (7, 5), 15)
    assert inference_dtype() == torch.float16
    fake_gpu(monkeypatch, "NVIDIA A100-SXM4-40GB", (8, 0), 40)
    assert inference_dtype() == torch.float16


def test_train_config_accepts_auto_and_rejects_typos():
    assert TrainConfig(mixed_precision="auto").mixed_precision == "auto"
    with pytest.raises(ValueError):
        TrainConfig(mixed_precision="bf17")


def test_fit_on_cpu_with_auto_trains_in_fp32_and_records_it(capsys):
    train, _ = toy_data(64)
    cfg = TrainConfig(epochs=1, lr=1e-2, batch_size=16, mixed_precision="auto", progress=False)
    result = fit(toy_model(), train, cfg, mse_loss)
    assert result.mixed_precision == "no" and "fp32" in result.precision_reason
    assert "mixed_precision='auto'" in capsys.readouterr().out


def test_fit_refuses_16bit_trainable_weights():
    train, _ = toy_data(16)
    with pytest.raises(ValueError, match="float32"):
        fit(toy_model().to(torch.bfloat16), train, TrainConfig(progress=False), mse_loss)


# ------------------------------------------------------------------------------------------ model sizes
def test_parameter_count_matches_a_hand_count_of_a_tiny_opt():
    from transformers import OPTConfig

    V, d, f, L, P = 97, 16, 40, 3, 32
    config = OPTConfig(vocab_size=V, hidden_size=d, word_embed_proj_dim=d, ffn_dim=f, num_hidden_layers=L,
                       num_attention_heads=4, max_position_embeddings=P, architectures=["OPTForCausalLM"])
    per_layer = 4 * (d * d + d) + 2 * d + (d * f + f) + (f * d + d) + 2 * d  # q,k,v,out; 2 LayerNorms; fc1; fc2
    # token embeddings (the LM head is tied to them), learned positions (OPT offsets them by 2), final LayerNorm
    by_hand = V * d + (P + 2) * d + L * per_layer + 2 * d
    assert parameter_count(config) == by_hand
    # and the estimates are that count times the stated bytes
    cpu = DeviceInfo("cpu", "CPU", 64 * GIB, 64 * GIB)
    assert fits_device(config, dtype=torch.float16, device=cpu).need_bytes == int(by_hand * 2 * 1.2)
    assert static_train_bytes(config, "bf16") == 18 * by_hand
    assert static_train_bytes(config, "no", trainable_params=100) == 16 * 100 + 4 * (by_hand - 100)
    train = fits_device(config, "train", dtype="bf16", device=cpu, text_tokens=10)
    assert train.need_bytes == int(18 * by_hand + activation_bytes_per_image(config, None, 10, True, "bf16"))


def test_parameter_counts_of_the_papers_models_match_their_hub_pages():
    # The hub pages count stored tensors: BLIP stores its tied 30,524 x 768 output matrix twice (247M / 470M).
    tied = 30524 * 768
    assert round((parameter_count(blip_config("base")) + tied) / 1e6) == 247
    assert round((parameter_count(blip_config("large")) + tied) / 1e6) == 470
    assert round(parameter_count(instructblip_7b_config()) / 1e7) == 791  # hub page: 7.91B


# ------------------------------------------------------------------------------------------- fit or skip
def test_instructblip_7b_inference_is_skipped_on_a_t4_with_a_message(t4, capsys):
    result = fits_device(instructblip_7b_config(), "inference", device=t4, name="InstructBLIP Vicuna-7b")
    assert not result.ok
    assert result.need_bytes > t4.usable_bytes
    message = capsys.readouterr().out
    assert message.strip() == result.message
    for part in ("InstructBLIP Vicuna-7b", "float16", "Tesla T4", "15.0 GiB", "skipped", "8-bit"):
        assert part in message


def test_instructblip_7b_fits_an_a100_and_blip_base_fits_a_t4(a100, monkeypatch):
    assert fits_device(instructblip_7b_config(), device=a100).ok
    fake_gpu(monkeypatch, "Tesla T4", (7, 5), 15)
    t4 = dev.device_info()
    assert fits_device(blip_config("base"), device=t4, name="BLIP-base").ok
    assert fits_device(blip_config("base"), "train", device=t4, image_size=224).ok
    # a fp32 7B model fits nowhere near a T4, and the message says fp16 would halve it
    fp32 = fits_device(instructblip_7b_config(), dtype=torch.float32, device=t4, verbose=False)
    assert not fp32.ok and "fp16 weights" in fp32.message


def test_fits_device_reads_only_the_config_from_a_directory(tmp_path, t4):
    blip_config("base").save_pretrained(tmp_path)  # config.json only, no weights
    assert fits_device(str(tmp_path), device=t4).details["parameters"] == parameter_count(blip_config("base"))


# ------------------------------------------------------------------------------------------ batch presets
def test_t4_blip_large_gets_checkpointing_and_a_smaller_micro_batch_with_the_same_effective_batch(t4):
    precision = resolve_mixed_precision("auto", t4, verbose=False).value
    plan = plan_batch(blip_config("large"), 64, image_size=384, mixed_precision=precision, device=t4)
    assert plan.ok and plan.gradient_checkpointing
    assert plan.micro_batch < 64 and plan.micro_batch * plan.grad_accum == 64
    assert plan.need_bytes <= t4.usable_bytes
    cfg = plan.apply(TrainConfig(batch_size=64, mixed_precision="auto"))
    assert (cfg.batch_size, cfg.grad_accum, cfg.gradient_checkpointing) == (plan.micro_batch, plan.grad_accum, True)


def test_a100_blip_large_needs_no_checkpointing(a100):
    plan = plan_batch(blip_config("large"), 64, image_size=384, mixed_precision="bf16", device=a100)
    assert plan.ok and not plan.gradient_checkpointing and plan.micro_batch * plan.grad_accum == 64


def test_uit_oggy_setup_blip_large_fp32_batch_4_on_a_t4_fits_unchanged(t4):
    """Seed 002 fine-tuned BLIP-large in fp32 at batch 4 on one T4: the estimate must agree that it fits."""
    plan = plan_batch(blip_config("large"), 4, image_size=224, mixed_precision="no", device=t4)
    assert (plan.micro_batch, plan.grad_accum, plan.gradient_checkpointing) == (4, 1, False)


def test_a_model_that_cannot_train_even_at_micro_batch_1_is_refused(t4):
    plan = plan_batch(instructblip_7b_config(), 8, mixed_precision="fp16", device=t4, verbose=False)
    assert not plan.ok and "skipped" in plan.message
    with pytest.raises(MemoryError):
        plan.apply(TrainConfig())


def test_estimate_is_just_above_the_measured_h100_peak():
    """reports/benchmarks/h100-2026-11-23 run 1: plain HF BLIP-base training, bf16 autocast, 224 px, batch 256,
    torch.cuda.max_memory_allocated. The estimate must cover it without being wildly conservative."""
    path = (REPO / "reports/benchmarks/h100-2026-11-23"
            / "run1-2026-11-23-nvidia-h100-80gb-hbm3-train-base-224px-bs256-bfloat16.json")
    run = next(r for r in json.loads(path.read_text()) if r["path"] == "hf")
    config = blip_config("base")
    tokens = round(run["padded_tokens_per_image"])
    estimate = static_train_bytes(config, "bf16") + run["batch_size"] * activation_bytes_per_image(config, 224, tokens)
    measured = run["peak_mem_gb"] * GIB  # bench.py divides by 2**30
    assert measured <= estimate <= 1.25 * measured


def _saved_activation_bytes(config, image_size: int, text_tokens: int, checkpointing: bool = False) -> int:
    """Bytes of the tensors autograd keeps for backward in one BLIP training forward, on the meta device
    (shapes only, free), in pure bf16: a floor for any 16-bit run (autocast adds fp32 copies)."""
    from transformers import BlipForConditionalGeneration

    with torch.device("meta"):
        model = BlipForConditionalGeneration(config).to(torch.bfloat16).train()
    if checkpointing:
        enable_gradient_checkpointing(model)
    weights = {p.untyped_storage()._cdata for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(t):
        key = t.untyped_storage()._cdata
        if key not in weights:
            saved[key] = t.untyped_storage().nbytes()
        return t

    pixels = torch.zeros(1, 3, image_size, image_size, device="meta", dtype=torch.bfloat16)
    ids = torch.zeros(1, text_tokens, dtype=torch.long, device="meta")
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(pixel_values=pixels, input_ids=ids, attention_mask=torch.ones_like(ids), labels=ids,
              interpolate_pos_encoding=image_size != config.vision_config.image_size)
    return sum(saved.values())


@pytest.mark.parametrize("name,image_size,tokens", [("base", 224, 126), ("large", 384, 200)])
def test_activation_estimate_covers_what_autograd_saves(name, image_size, tokens):
    config = blip_config(name)
    floor = _saved_activation_bytes(config, image_size, tokens)
    estimate = activation_bytes_per_image(config, image_size, tokens)
    assert floor <= estimate <= 2.5 * floor  # measured 1.9x / 2.1x: autocast's fp32 copies + backward buffers
    ckpt_floor = _saved_activation_bytes(config, image_size, tokens, checkpointing=True)
    ckpt = activation_bytes_per_image(config, image_size, tokens, checkpointing=True)
    assert ckpt_floor <= ckpt < estimate / 3


# --------------------------------------------------------------------------------- gradient checkpointing
def _tiny_blip():
    from transformers import BlipForConditionalGeneration

    from medcap_utils.models.blip import demo_blip_config

    torch.manual_seed(0)
    config = demo_blip_config(200, 1, 0, 2, image_size=32, patch_size=8, vision_hidden=32, vision_layers=2,
                              text_hidden=32, text_layers=2, heads=2)
    config.vision_config.attention_dropout = 0.1  # randomness inside the recomputed layers: RNG must replay
    return BlipForConditionalGeneration(config).train()


@pytest.mark.parametrize("freeze_vision", [False, True])
def test_gradient_checkpointing_gives_the_same_loss_and_gradients(freeze_vision):
    from medcap_utils.models.blip import freeze

    model = _tiny_blip()
    freeze(model, vision_encoder=freeze_vision)
    checkpointed = copy.deepcopy(model)
    enable_gradient_checkpointing(checkpointed)
    g = torch.Generator().manual_seed(1)
    pixels = torch.randn(3, 3, 32, 32, generator=g)
    ids = torch.randint(3, 200, (3, 7), generator=g)
    calls = {"plain": 0, "checkpointed": 0}

    def run(m, key):
        # count calls of a Linear inside one vision and one text layer (instance-level wrappers: a module hook
        # inside BLIP's vision layers does not fire again when the layer is recomputed)
        vision_fc1 = m.vision_model.encoder.layers[0].mlp.fc1
        for linear in (vision_fc1, m.text_decoder.bert.encoder.layer[0].intermediate.dense):
            def counted(x, inner=linear.forward):
                calls[key] += 1
                return inner(x)
            linear.forward = counted
        torch.manual_seed(2)
        loss = m(pixel_values=pixels, input_ids=ids, labels=ids).loss
        loss.backward()
        return loss

    plain_loss, ckpt_loss = run(model, "plain"), run(checkpointed, "checkpointed")
    torch.testing.assert_close(ckpt_loss, plain_loss)
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert any(n.startswith("vision_model") for n in grads) != freeze_vision
    for name, p in checkpointed.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(p.grad, grads[name], rtol=1e-5, atol=1e-6, msg=name)
    # the recomputation really happened: the text layer runs twice, the vision one too unless it is frozen
    # (a frozen encoder's layers need no backward, so nothing is recomputed)
    assert calls["plain"] == 2 and calls["checkpointed"] == (3 if freeze_vision else 4)


def test_checkpointing_a_model_that_cannot_is_an_error():
    with pytest.raises(ValueError, match="gradient checkpointing"):
        enable_gradient_checkpointing(toy_model())
