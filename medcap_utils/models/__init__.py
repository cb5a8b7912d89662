"""One module per paper's model; every model is loaded by hub id or by a ``save_pretrained`` directory.

- ``blip``: BLIP captioning (seeds 000-002), demo BLIP built offline; ``blip_training``: recipes on the
  shared Accelerate loop; ``captioning_data``: image-cache batches (notebooks 02-04).
- ``vit_gpt2``, ``blip2``, ``causal_tokenizer``: seed 001's comparison models (notebook 03).
- ``medcsra``: concept detection (notebook 05); ``lstm_captioner*``: seed 004 (notebook 07).

Sub-modules are imported on use (``from medcap_utils.models.blip import load_blip``) so that importing
the package stays cheap.
"""
