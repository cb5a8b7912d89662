"""Turning a trained model and images into captions, the one decoding interface of the repository.

``config`` (:class:`DecodingConfig`: every decoding option, which engine implements which, recipe
``decoding:`` sections), ``caption`` (:func:`caption`: one call for BLIP, BLIP-2, InstructBLIP, ViT-GPT2,
MSMedCap and the attention LSTM), the engines ``blip`` + ``blip_fast`` + ``blip_stepper`` (BLIP's fast decoder)
and ``lstm``, and ``captioners`` (timed captioning of a split, notebooks 03-04). May import ``data``,
``metrics`` and ``models`` only, so training and evaluation can caption without a cycle."""
