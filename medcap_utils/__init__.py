"""medcap_utils: all the logic behind medcap's numbered notebooks.

Notebooks tell the story; this package does the work. Sub-packages:
``data`` (ROCOv2 reader, validator, demo synthesiser, image cache), ``metrics`` (one module per
metric family), ``models`` (one module per paper's model), ``training`` (Accelerate loop),
``evaluate`` / ``caption`` / ``reproduce`` (command-line entry points).
"""

__version__ = "0.1.0"

# first, so that tqdm.auto follows medcap's choice (progress.py) before a library builds its bars from it
from medcap_utils import progress as _progress  # noqa: E402,F401
