"""Commands that drive whole runs: ``reproduce`` (papermill over the notebooks), ``repeat_check``, ``colab`` (the
Colab badge and setup cell), ``caption`` (caption images from the shell), ``bench`` (with ``bench_setup``) and
``loss_curves`` (speed and parity benchmarks). The ``medcap`` command (:mod:`medcap_utils.cli`) dispatches to them."""
