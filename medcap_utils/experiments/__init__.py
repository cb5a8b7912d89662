"""One module per numbered notebook (``experiments/medblip_ablation.py`` for ``03_medblip_ablation.ipynb``): that
notebook's steps, paper tables and demo settings. A notebook imports its own experiments module and the layers;
nothing in the package imports ``experiments`` (tests/test_layout.py checks both rules)."""
