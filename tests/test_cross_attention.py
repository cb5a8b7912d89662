"""Cross-attention maps of a tiny random BLIP: shapes, normalisation, the token/query alignment,
aggregation, upsampling and the box-mass score."""
import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch

from medcap_utils.analysis.cross_attention import aggregate, blip_cross_attention, mass_in_box, plot_gallery, upsample
from medcap_utils.models.blip import build_demo_blip, load_blip, pixel_values

CAPTIONS = ["axial ct of the chest shows a mass", "sagittal mri of the spine", "ultrasound of the liver",
            "chest x-ray shows an effusion on the left"] * 10


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("blip")
    build_demo_blip(out, CAPTIONS, vocab_size=120, image_size=32, patch_size=8, vision_hidden=32,
                    vision_layers=2, text_hidden=32, text_layers=2, heads=4)
    return load_blip(out)


@pytest.fixture(scope="module")
def result(tiny):
    model, processor = tiny
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    return blip_cross_attention(model, processor, image, max_new_tokens=8, no_repeat_ngram_size=0)


def test_maps_have_patch_grid_shape_and_sum_to_one_per_head(result):
    layers, heads, tokens, gh, gw = result.attention.shape
    assert (layers, heads, gh, gw) == (2, 4, 4, 4)
    assert tokens == len(result.tokens) == len(result.token_ids) > 0
    assert (result.attention >= 0).all()
    assert torch.allclose(result.attention.sum(dim=(-2, -1)), torch.ones(layers, heads, tokens), atol=1e-5)
    assert ((result.cls_share >= 0) & (result.cls_share <= 1)).all()


def test_map_of_token_j_is_the_attention_of_the_query_that_produced_it(tiny, result):
    """Recompute from a prefix-only forward pass: the last query of ids[:j] produced token j."""
    model, processor = tiny
    pixels = pixel_values(torch.from_numpy(result.image[None]), processor)
    embeds = model.vision_model(pixel_values=pixels).last_hidden_state
    bos = model.config.text_config.bos_token_id
    ids = [bos] + result.token_ids
    for k in range(len(result.token_ids)):
        prefix = torch.tensor([ids[: k + 1]])
        with torch.no_grad():
            out = model.text_decoder(input_ids=prefix, encoder_hidden_states=embeds, output_attentions=True,
                                     return_dict=True)
        last = torch.stack([a[0, :, -1, :] for a in out.cross_attentions])  # (layers, heads, 1 + patches)
        patches = last[..., 1:] / last[..., 1:].sum(-1, keepdim=True)
        assert torch.allclose(patches.reshape(2, 4, 4, 4), result.attention[:, :, k], atol=1e-5)
        assert torch.allclose(last[..., 0], result.cls_share[:, :, k], atol=1e-5)


def test_tokens_are_the_generated_caption(tiny, result):
    _, processor = tiny
    assert processor.tokenizer.decode(result.token_ids) == result.caption


def test_aggregation_choices(result):
    att = result.attention
    n = att.shape[2]
    for heads in ("mean", "max", 0, 3):
        for layers in ("last", "all", 0):
            maps = aggregate(att, heads, layers)
            assert maps.shape == (n, 4, 4)
            assert (maps >= 0).all()
            assert torch.allclose(maps.sum(dim=(-2, -1)), torch.ones(n), atol=1e-5)
    assert torch.allclose(aggregate(att, "mean", "last"), att[-1].mean(dim=0), atol=1e-6)
    assert torch.allclose(aggregate(att, 2, 0), att[0, 2], atol=1e-6)
    assert torch.allclose(aggregate(att, "mean", "all"), att.mean(dim=(0, 1)), atol=1e-6)
    with pytest.raises(ValueError):
        aggregate(att, "median")


def test_upsampling_keeps_where_the_mass_is():
    maps = torch.zeros(1, 4, 4)
    maps[0, 1, 2] = 1.0
    big = upsample(maps, 32)
    assert big.shape == (1, 32, 32) and (big >= 0).all()
    row, col = divmod(int(big[0].argmax()), 32)
    assert (row // 8, col // 8) == (1, 2)


def test_mass_in_box():
    uniform = torch.full((1, 4, 4), 1 / 16)
    assert torch.allclose(mass_in_box(uniform, (0.0, 0.0, 0.5, 0.5)), torch.tensor([0.25]))
    peaked = torch.zeros(1, 4, 4)
    peaked[0, 3, 0] = 1.0  # bottom-left cell
    assert mass_in_box(peaked, (0.0, 0.75, 0.25, 1.0)).item() == pytest.approx(1.0)
    assert mass_in_box(peaked, (0.5, 0.0, 1.0, 0.5)).item() == pytest.approx(0.0)
    assert torch.isnan(mass_in_box(peaked, (float("nan"), 0.0, 1.0, 0.5))).all()  # image without a finding


def test_gallery_has_one_row_per_caption(result):
    fig = plot_gallery([result, result], ["correct", "wrong"], max_tokens=3)
    panels = [ax for ax in fig.axes if getattr(ax, "_colorbar", None) is None]
    assert len(panels) == 2 * 4 and len(fig.axes) == len(panels) + 1  # one colour bar for the figure


def test_one_upsample_for_cross_attention_and_the_lstm_explanations():
    from medcap_utils.analysis import explain

    maps = torch.rand(3, 4, 5, generator=torch.Generator().manual_seed(0))
    raw = upsample(maps, (16, 20))  # notebook 03: values kept (mass in the box)
    shown = explain.upsample(maps.numpy(), (16, 20))  # notebook 07: each map rescaled to [0, 1] for display
    assert isinstance(raw, torch.Tensor) and isinstance(shown, np.ndarray) and shown.shape == (3, 16, 20)
    lo, hi = raw.amin(dim=(1, 2), keepdim=True), raw.amax(dim=(1, 2), keepdim=True)
    assert np.allclose(shown, ((raw - lo) / (hi - lo)).numpy(), atol=1e-6)
    assert shown.min() == 0 and np.allclose(shown.max(axis=(1, 2)), 1)
    assert np.allclose(explain.upsample(maps[0].numpy(), (16, 20)), shown[0])  # one (h, w) map
