"""medcap_utils: all the logic behind medcap's numbered notebooks.

Notebooks tell the story; this package does the work. Layers, each importing only those before it
(CONTRIBUTING.md; tests/test_layout.py): the root's infrastructure modules (paths, atomic writes, devices, memory, the
hub, progress, figures and tables), ``data``, ``metrics``, ``models`` (architectures), ``decoding``, ``training``
(the Accelerate loop, recipes), ``evaluation``, ``analysis`` (where models look), ``explorer``, ``runner``
(commands that drive runs), and ``experiments`` (one module per numbered notebook, imported by nothing).
``medcap`` (:mod:`medcap_utils.cli`) is the command line.
"""

__version__ = "0.1.0"

# first, so that tqdm.auto follows medcap's choice (progress.py) before a library builds its bars from it
from medcap_utils import progress as _progress  # noqa: E402,F401
