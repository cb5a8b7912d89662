"""Architectures only: build, load (hub id or a ``save_pretrained`` folder), loss, forward; one module per model.

- ``blip``: BLIP captioning (seeds 000-002), the offline demo BLIP; ``blip_fast``: its SDPA training path.
- ``vit_gpt2``, ``blip2``, ``causal_tokenizer``: seed 001's comparison models (notebook 03).
- ``msmedcap``: seed 003 (notebook 06), its encoders, LM and Q-Former branch in ``msmedcap_parts``; ``medcsra``:
  seed 002's concept detector (notebook 05); ``lstm_captioner``: seed 004 (notebook 07), its attention modules in
  ``lstm_attention``; ``wordpiece_vocab``: the demo vocabularies.

Training recipes live in :mod:`medcap_utils.training`, captioning in :mod:`medcap_utils.decoding`. Sub-modules are
imported on use so that importing the package stays cheap.
"""
