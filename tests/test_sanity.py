"""Sanity checks that are checks (medcap_utils.training.sanity): the overfit check passes when a tiny BLIP can fit
8 captions and raises with its numbers when it cannot (lr 0), and ``require`` raises with its message."""
from __future__ import annotations

import pytest
import torch

from medcap_utils.models.blip import build_demo_blip, load_blip
from medcap_utils.training.sanity import SanityCheckError, overfit_check, require, same_caption

CAPTIONS = ["Axial CT of the chest shows a nodule (white arrow).", "Knee radiograph.",
            "Brain MRI, sagittal T2-weighted image without abnormality.", "Abdominal ultrasound.",
            "Chest X-ray with a small pleural effusion.", "Hand radiograph, no fracture.",
            "Coronal CT of the abdomen shows a liver mass.", "Pelvic MRI without abnormality."]


class TinyCaptions(torch.utils.data.Dataset):
    """8 random 32 px images with the captions above, in the shape of CaptionImageCacheDataset."""

    def __init__(self):
        g = torch.Generator().manual_seed(0)
        self._images = torch.randint(0, 256, (len(CAPTIONS), 32, 32, 3), generator=g, dtype=torch.uint8)
        self.captions = list(CAPTIONS)

    def __len__(self):
        return len(self.captions)

    def __getitem__(self, i):
        return {"id": str(i), "row": i, "image": self._images[i], "caption": self.captions[i], "modality": None}

    def images(self, indices=None):
        idx = range(len(self)) if indices is None else indices
        return self._images[list(idx)].numpy()


@pytest.fixture
def tiny(tmp_path):
    path = build_demo_blip(tmp_path / "m", CAPTIONS * 5, vocab_size=200, image_size=32, vision_hidden=32,
                           vision_layers=1, text_hidden=32, text_layers=1, heads=2)
    return load_blip(path)


def test_overfit_check_passes_when_the_model_fits_the_eight_captions(tiny):
    model, processor = tiny
    r = overfit_check(model, processor, TinyCaptions(), steps=60, lr=1e-2, max_length=24)
    assert r.passed and r.final_loss < 0.1 and r.reproduced >= 7 and r.n == 8
    assert r.first_loss > 3 > r.final_loss


def test_overfit_check_raises_with_its_numbers_when_the_model_cannot_learn(tiny):
    model, processor = tiny
    with pytest.raises(SanityCheckError, match=r"loss \d\.\d+ -> \d\.\d+ \(must be < 0\.1\); reproduced 0/8"):
        overfit_check(model, processor, TinyCaptions(), steps=3, lr=0.0, max_length=24)
    r = overfit_check(model, processor, TinyCaptions(), steps=3, lr=0.0, max_length=24, raise_on_fail=False)
    assert not r.passed and r.final_loss > 1


def test_require_raises_an_assertion_with_the_message():
    require(True, "not raised")
    with pytest.raises(AssertionError, match="max diff 3"):
        require(False, "max diff 3")
    assert same_caption("( white arrow ).", "(White arrow).") and not same_caption("a b", "a c")
