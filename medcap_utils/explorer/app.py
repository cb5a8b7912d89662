"""An ipywidgets explorer of a reports folder: pick an image, see every run's caption, scores, concepts and maps.

    from medcap_utils.explorer.app import explore
    explore(reports="reports", data_dir="data/demo")   # the last expression of a cell: Jupyter shows it

Choose a split and an image by ID (dropdown), by position (slider, previous/next), or from the list of the
worst images of a run by one of its per-image metrics. Shown for that image: the picture, the reference
caption, every caption run's full caption with its per-image scores (one protocol at a time), each concept
run's predictions against the ground-truth concepts (found / wrong / missed, named through
``cui_mapping.csv``) and, for a chosen caption run, its attention map per generated word, or a line saying
that the run saved none. Notebook 08 ends with it. The data come from
:class:`medcap_utils.explorer.data.ExplorerData`, the HTML and pictures from
:mod:`medcap_utils.explorer.render`; this module only lays out widgets and wires them.
"""
from __future__ import annotations

from html import escape

import ipywidgets as w

from medcap_utils.explorer.data import ExplorerData
from medcap_utils.explorer.render import attention_png, captions_html, concepts_html, protocols, reference_html

NO_MAP = "no map for this run"


def _set_options(dropdown, options, prefer=None) -> None:
    """New options; the value kept if still offered, else ``prefer`` if offered, else the first (an
    ipywidgets dropdown that had no options would select nothing)."""
    keep, options = dropdown.value, list(options)
    dropdown.options = options
    dropdown.value = next((v for v in (keep, prefer) if v is not None and v in options),
                          options[0] if options else None)


class Explorer(w.VBox):
    """The explorer widget; its parts (``split``, ``image``, ``slider``, ``reference``, ``captions``...) are
    attributes, so a notebook or a test can set ``explorer.image.value`` and read ``explorer.reference.value``."""

    def __init__(self, data: ExplorerData, split: str | None = None, n_worst: int = 10, image_width: int = 340):
        self.data = data
        self._busy = False
        splits = data.splits()
        wide = {"description_width": "initial"}
        self.split = w.Dropdown(options=splits, value=split or (splits[0] if splits else None), description="split",
                                layout=w.Layout(width="150px"), style=wide)
        self.image = w.Dropdown(description="image", layout=w.Layout(width="310px"), style=wide)
        self.slider = w.IntSlider(min=0, max=0, description="#", continuous_update=False,
                                  layout=w.Layout(width="250px"),
                                  style=wide)
        self.previous = w.Button(description="◀", tooltip="previous image", layout=w.Layout(width="40px"))
        self.next = w.Button(description="▶", tooltip="next image", layout=w.Layout(width="40px"))
        self.worst_run = w.Dropdown(description="worst images of run", layout=w.Layout(width="420px"), style=wide)
        self.worst_metric = w.Dropdown(description="by", layout=w.Layout(width="330px"), style=wide)
        self.worst_n = w.BoundedIntText(value=n_worst, min=1, max=500, description="N", layout=w.Layout(width="110px"),
                                        style=wide)
        self.worst_list = w.Select(rows=6, layout=w.Layout(width="420px"))
        self.picture = w.Image(format="jpeg", layout=w.Layout(width=f"{image_width}px", height="auto"))
        self.no_picture = w.HTML()
        self.reference = w.HTML()
        self.concepts = w.HTML()
        self.protocol = w.Dropdown(description="scores", layout=w.Layout(width="260px"), style=wide)
        self.captions = w.HTML()
        self.attention_run = w.Dropdown(description="attention map of run", layout=w.Layout(width="420px"), style=wide)
        self.attention = w.Image(format="png", layout=w.Layout(max_width="100%", height="auto"))
        self.attention_note = w.HTML()
        self.view = None
        problems = "".join(f"<li>{escape(r)}: {escape(p)}</li>" for r, p in data.problems.items())
        note = w.HTML(f"<small>runs left out:<ul>{problems}</ul></small>" if problems else "")
        super().__init__([
            w.HTML(f"<b>Results explorer</b> · {len(data.info)} runs in <code>{escape(str(data.runs_dir))}</code>"),
            w.HBox([self.split, self.image, self.slider, self.previous, self.next],
                   layout=w.Layout(flex_flow="row wrap")),
            w.HBox([w.VBox([w.HBox([self.worst_run, self.worst_n]), self.worst_metric]), self.worst_list],
                   layout=w.Layout(flex_flow="row wrap")),
            w.HBox([w.VBox([self.picture, self.no_picture], layout=w.Layout(width=f"{image_width + 10}px")),
                    w.VBox([self.reference, self.concepts], layout=w.Layout(flex="1", min_width="300px"))],
                   layout=w.Layout(flex_flow="row wrap")),
            self.protocol, self.captions,
            self.attention_run, self.attention_note, self.attention, note,
        ])
        self.add_class("medcap-explorer")
        self.image.add_class("medcap-image")
        self.split.observe(lambda _: self._split_changed(), "value")
        self.image.observe(lambda change: self._show(change["new"]), "value")
        self.slider.observe(lambda change: self._pick(self.image.options[change["new"]])
                            if self.image.options else None,
                            "value")
        self.previous.on_click(lambda _: self._step(-1))
        self.next.on_click(lambda _: self._step(1))
        self.worst_run.observe(lambda _: self._worst_run_changed(), "value")
        self.worst_metric.observe(lambda _: self._fill_worst(), "value")
        self.worst_n.observe(lambda _: self._fill_worst(), "value")
        self.worst_list.observe(lambda change: self._pick(change["new"]) if change["new"] else None, "value")
        self.protocol.observe(lambda _: self._draw_captions(), "value")
        self.attention_run.observe(lambda _: self._draw_attention(), "value")
        self._split_changed()

    def __repr__(self) -> str:  # the text an executed notebook keeps (ipywidgets' default repeats every child)
        return f"<results explorer: {len(self.data.info)} runs, image {self.image.value}; needs a live kernel>"

    # --- choosing ------------------------------------------------------------------------------------
    def _pick(self, image_id: str) -> None:
        if image_id in self.image.options and self.image.value != image_id:
            self.image.value = image_id

    def _step(self, delta: int) -> None:
        if self.image.options:
            self.slider.value = (self.slider.value + delta) % len(self.image.options)

    def _split_changed(self) -> None:
        split = self.split.value
        ids = self.data.images(split) if split else []
        self.slider.max = max(len(ids) - 1, 0)
        _set_options(self.worst_run, [r for r in self.data.runs_of(split) if self.data.metrics(r)] if split else [])
        _set_options(self.attention_run, self.data.runs_of(split, "captions") if split else [])
        before = self.image.value
        _set_options(self.image, ids)  # a new image: its observer draws it
        if self.image.value == before:
            self._show(self.image.value)

    def _worst_run_changed(self) -> None:
        run = self.worst_run.value
        _set_options(self.worst_metric, self.data.metrics(run) if run else [])
        self._fill_worst()

    def _fill_worst(self) -> None:
        run, metric = self.worst_run.value, self.worst_metric.value
        table = self.data.worst(run, metric, self.worst_n.value) if run and metric else None
        self.worst_list.value = None
        self.worst_list.options = [] if table is None else [(f"{v:.3f}  {i}", i) for i, v in zip(table.ID, table.value)]
        self.worst_list.value = None
        if metric and metric.split(":", 1)[0] in self.protocol.options:
            self.protocol.value = metric.split(":", 1)[0]
        self._draw_captions()

    # --- showing -------------------------------------------------------------------------------------
    def _show(self, image_id: str | None) -> None:
        if image_id is None:
            self.view = None
            self.reference.value = "<i>no images in this split</i>"
            self.captions.value = self.concepts.value = ""
            return
        if image_id in self.image.options:
            self.slider.value = list(self.image.options).index(image_id)
        self.view = self.data.view(image_id, self.split.value)
        picture = self.data.image_bytes(self.view)
        self.picture.layout.display = None if picture else "none"
        self.picture.value = picture or b""
        self.no_picture.value = ("" if picture
                                 else f"<i>image not found ({escape(str(self.data.data_root(self.split.value)))})</i>")
        self.reference.value = reference_html(self.view)
        self.concepts.value = concepts_html(self.view)
        metric = self.worst_metric.value
        _set_options(self.protocol, protocols(self.view), metric.split(":", 1)[0] if metric else None)
        self._draw_captions()
        runs_with_map = [r for r, m in self.view.attention.items() if m is not None]
        if runs_with_map and self.view.attention.get(self.attention_run.value) is None:
            self.attention_run.value = runs_with_map[0]  # its observer draws the map
        else:
            self._draw_attention()

    def _draw_captions(self) -> None:
        if self.view is not None:
            self.captions.value = captions_html(self.view, self.protocol.value, self.worst_run.value)

    def _draw_attention(self) -> None:
        run = self.attention_run.value
        amap = self.view.attention.get(run) if self.view is not None and run else None
        if amap is None:
            saved = len(self.data.attention_images(run)) if run else 0
            why = (f"this run saved maps for {saved} other image{'s' if saved > 1 else ''}, not this one"
                   if saved else NO_MAP)
            with_maps = [r for r, m in (self.view.attention.items() if self.view else []) if m is not None]
            other = f" (maps of this image: {', '.join(with_maps)})" if with_maps else ""
            self.attention_note.value = f"<i>{escape(why + other)}</i>" if run else ""
            self.attention.layout.display = "none"
            return
        self.attention_note.value = ""
        self.attention.value = attention_png(self.data.image_bytes(self.view), amap)
        self.attention.layout.display = None


def explore(reports="reports", data_dir=None, runs=None, split: str | None = None, **options) -> Explorer:
    """The explorer over ``reports`` (a reports folder, or its ``runs/``); ``data_dir``: the dataset
    (default: each run's own); ``runs``: run names to show (default: all). Returns the widget: as a
    cell's last expression Jupyter displays it, elsewhere ``IPython.display.display(explore(...))``."""
    return Explorer(ExplorerData(reports, data_dir, runs), split=split, **options)
