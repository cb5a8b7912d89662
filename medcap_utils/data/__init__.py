"""ROCOv2 data layer: readers (:mod:`.rocov2`), reading one file or zip member safely (:mod:`.files`), RGB decoding
(:mod:`.images`), validation (:mod:`.check`), the decode-once image cache (:mod:`.cache`), the demo synthesiser
(:mod:`.synth`, drawing in :mod:`.synth_draw` and :mod:`.synth_paint`) and the Colab subset (:mod:`.subset`, its
folder writing in :mod:`.subset_files`).

Command line: ``python -m medcap_utils.data check DIR`` and ``python -m medcap_utils.data synth``.
"""
from medcap_utils.data.rocov2 import (  # noqa: F401  (re-exported for notebooks)
    MANUAL_CUIS, MODALITY_CUIS, SPLITS, load_hf_rocov2, load_split, modality_of, read_captions,
    read_concepts, read_cui_mapping, split_frame,
)
