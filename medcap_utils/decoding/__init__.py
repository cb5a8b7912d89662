"""Turning a trained model and images into captions: the fast BLIP decoder (``blip_fast``), BLIP's batched
captioning (``blip``) and one ``Captioner`` per model family (``captioners``). May import ``data``, ``metrics`` and
``models`` only, so training and evaluation can caption without a cycle."""
