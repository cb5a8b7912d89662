"""Progress bars that suit where the code runs: widgets in JupyterLab or Colab, whole lines in an executed copy.

``tqdm.auto`` picks ipywidgets whenever it runs in a Jupyter kernel with ipywidgets installed, whether or not a
front end will ever draw them. Under papermill and nbval nobody does, and every redraw of a bar becomes two comm
messages on the kernel's IOPub channel. nbval does not read IOPub until the cell's reply has come, and ZeroMQ's
publisher drops what does not fit in the queues meanwhile (about 6,000 messages here: the high-water marks of
1,000 on each side plus socket buffers), the cell's closing ``status: idle`` among them; nbval then fails with
"Timeout of 5 seconds exceeded waiting for output" (its IOPub timeout is hard-coded). Measured: one cell of
40,000 bar updates sends ~80,000 messages, the client receives 5,996 and never the idle status
(``tests/test_progress.py`` runs that cell under nbval). Notebook 02's training cell is near that limit, so it
failed or passed with the machine's speed. ``TQDM_DISABLE=1`` does not help: it only changes tqdm's *default*,
and the training loop passes ``disable`` explicitly. Without ipywidgets the same bars write ``\\r`` fragments,
hundreds per cell in the executed notebook, after a ``TqdmWarning: IProgress not found``.

:func:`progress_mode` decides once per process, ``MEDCAP_PROGRESS`` overriding it:

* ``widgets``: a kernel whose front end draws widgets (JupyterLab or Notebook 7, which set ``JPY_SESSION_NAME``
  for their kernels; Google Colab) and ipywidgets installed;
* ``lines``: any other kernel (papermill, nbval, nbconvert): whole lines, no ``\\r``: one when the bar closes, if
  it ran :data:`LINE_DELAY_S` seconds or more (a bar done sooner leaves no trace), and before that at most one
  per :data:`LINE_INTERVAL_S` seconds and per tenth of its total, so a bar writes at most about 11 lines however
  long it runs;
* ``bar``: a terminal, tqdm's usual redrawn line;
* ``off``: nothing.

In ``lines`` and ``off`` mode importing this module also points ``tqdm.auto`` at the same choice, so the bars of
transformers ("Loading weights", "Writing model shards"), datasets and Accelerate follow it; ``medcap_utils``
imports it first, before any of those libraries builds a bar.
"""
from __future__ import annotations

import os
import sys
import warnings

from tqdm import std as _std

ENV = "MEDCAP_PROGRESS"
MODES = ("widgets", "lines", "bar", "off")
#: seconds a bar stays silent in ``lines`` mode: caches and model saves that finish sooner print nothing
LINE_DELAY_S = 5.0
#: at most one progress line per this many seconds (and per tenth of the total), besides the closing line
LINE_INTERVAL_S = 30.0


def _kernel():
    """The running IPython kernel's shell, or None (a terminal, a script, a terminal IPython)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return shell if shell is not None and "IPKernelApp" in shell.config else None


def interactive_front_end() -> bool:
    """Whether this kernel serves a front end that draws widgets: a jupyter_server (JupyterLab, Notebook 7)
    gives its kernels ``JPY_SESSION_NAME``; Colab's kernel has ``google.colab`` loaded. Papermill, nbval and
    nbconvert start kernels without either."""
    return bool(os.environ.get("JPY_SESSION_NAME")) or "google.colab" in sys.modules


def progress_mode() -> str:
    """``widgets``, ``lines``, ``bar`` or ``off`` (see the module docstring); ``MEDCAP_PROGRESS`` overrides."""
    forced = os.environ.get(ENV, "").strip().lower()
    if forced:
        if forced not in MODES:
            raise ValueError(f"{ENV}={forced!r}; expected one of {MODES}")
        return forced
    if _kernel() is None:
        return "bar"
    if interactive_front_end():
        try:
            import ipywidgets  # noqa: F401
        except ImportError:  # a front end but no widgets: text, never tqdm's IProgress warning
            return "lines"
        return "widgets"
    return "lines"


class LineBar(_std.tqdm):
    """tqdm that writes whole lines instead of redrawing one (``lines`` mode): silent for ``delay`` seconds, then a
    line at most every ``line_interval`` seconds and per tenth of ``total``, and a last line when it closes."""

    def __init__(self, *args, line_interval: float = LINE_INTERVAL_S, **kwargs):
        kwargs.setdefault("delay", LINE_DELAY_S)
        kwargs.setdefault("mininterval", 1.0)
        self.line_interval = line_interval
        self._line_at: float | None = None  # time and count of the last line written
        self._line_n = None
        super().__init__(*args, **kwargs)

    def display(self, msg=None, pos=None):
        if msg == "":  # tqdm clearing its line (leave=False): a log keeps what it wrote
            return False
        now = self._time()
        if msg is None:  # a progress line: line_interval after the start or the last line, a tenth further on
            since = self._line_at if self._line_at is not None else getattr(self, "start_t", now)  # unset in __init__
            if now - since < self.line_interval:
                return True
            if self.total and self.n - (self._line_n or 0) < self.total / 10:
                return True
        self._write_line(msg if msg is not None else self.__str__(), now)
        return True

    def _write_line(self, text: str, now: float) -> None:
        self.fp.write(text.rstrip() + "\n")
        self.fp.flush()
        self._line_at, self._line_n = now, self.n

    def clear(self, nolock=False):  # nothing to erase in a log
        pass

    def close(self):
        if self.disable:
            return
        now = self._time()
        if self.n and self._line_n != self.n and now - self.start_t >= self.delay:
            self._ema_dt = lambda: None  # the closing line shows the overall rate
            self._write_line(self.__str__(), now)
        self.leave = False  # tqdm's close then has nothing left to write
        super().close()


def tqdm_class(mode: str | None = None):
    """The tqdm class for ``mode`` (default :func:`progress_mode`)."""
    mode = mode or progress_mode()
    if mode == "widgets":
        from tqdm.notebook import tqdm as notebook_tqdm

        return notebook_tqdm
    return LineBar if mode in ("lines", "off") else _std.tqdm


def tqdm(*args, **kwargs):
    """A progress bar for where this runs; the arguments are tqdm's (``disable=True`` still disables it)."""
    mode = progress_mode()
    if mode == "off":
        kwargs["disable"] = True
    return tqdm_class(mode)(*args, **kwargs)


def route_library_bars(mode: str | None = None) -> bool:
    """In ``lines`` or ``off`` mode, make ``tqdm.auto`` give the same bars (libraries that build theirs from it:
    transformers, datasets, Accelerate, huggingface_hub when imported afterwards). True when it changed it."""
    mode = mode or progress_mode()
    if mode not in ("lines", "off"):
        return False
    with warnings.catch_warnings():  # tqdm.auto warns "IProgress not found" in a kernel without ipywidgets
        warnings.simplefilter("ignore", _std.TqdmWarning)
        import tqdm.auto
        import tqdm.autonotebook

    cls = LineBar
    if mode == "off":
        class cls(LineBar):  # noqa: N801 - a class, named like tqdm's
            def __init__(self, *args, **kwargs):
                kwargs["disable"] = True
                super().__init__(*args, **kwargs)

    for module in (tqdm.auto, tqdm.autonotebook):
        module.tqdm = cls
        module.trange = lambda *args, **kwargs: cls(range(*args), **kwargs)
    return True


if _kernel() is not None:
    route_library_bars()
