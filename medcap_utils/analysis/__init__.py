"""Where models look: BLIP cross-attention maps (seed 001), the attention-LSTM's maps and grounding probes and
its explanation figures (seed 004), MedCSRA's attention-branch maps (seed 002), and the per-image map files the
results explorer reads. May import the layers below it (data, metrics, models, decoding, training, evaluation)."""
