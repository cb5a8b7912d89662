"""The attention LSTM's decoding engine (notebook 07, seed 004): greedy or beam search as a
:class:`~medcap_utils.decoding.config.DecodingConfig` says, through :meth:`LSTMCaptioner.greedy` /
:meth:`LSTMCaptioner.beam_search`. The search implements ``num_beams`` and ``max_new_tokens`` (the model's
``max_len``) and ranks beams by the plain log-probability sum (Show-Attend-Tell); any other option set away
from its default is refused by name (``DecodingConfig.check_engine("lstm")``)."""
from __future__ import annotations

import numpy as np
import torch

from medcap_utils.decoding.config import DecodingConfig
from medcap_utils.models.lstm_captioner import pixels


@torch.no_grad()
def lstm_search(model, images_uint8: torch.Tensor, config: DecodingConfig) -> dict:
    """One batch of uint8 images ``(B, H, W, 3)`` on the model's device -> the model's search output
    (``ids``, ``alphas``, ``grid``): greedy when ``num_beams == 1``, beam search otherwise."""
    config.check_engine("lstm")
    if config.num_beams == 1:
        return model.greedy(pixels(images_uint8), max_len=config.max_new_tokens)
    return model.beam_search(pixels(images_uint8), beam_size=config.num_beams, max_len=config.max_new_tokens)


def lstm_captions(model, vocab, images_uint8, config: DecodingConfig, batch_size: int = 32) -> list[str]:
    """One caption per image: the generated words joined by spaces (``vocab.decode`` of each row)."""
    model.eval()
    device = next(model.parameters()).device
    out: list[str] = []
    for start in range(0, len(images_uint8), batch_size):
        batch = torch.from_numpy(np.array(images_uint8[start:start + batch_size])).to(device)
        out += [" ".join(vocab.decode(row)) for row in lstm_search(model, batch, config)["ids"].tolist()]
    return out
