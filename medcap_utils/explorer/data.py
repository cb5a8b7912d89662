"""What the results explorer shows, gathered from a reports folder with pandas alone (no widgets).

Reads what notebooks 02-08 wrote: every ``<reports>/runs/<run>/run.json`` with its run file
(:mod:`medcap_utils.evaluation.runfiles`), the per-image scores notebook 08 writes to ``eval_<protocol>/per_image.csv``
(and ``per_image.csv`` beside the run file, which notebooks 03 and 04 write), the attention maps of
:mod:`medcap_utils.analysis.attention_maps`, and from the data folder the reference captions, the ground-truth
concepts, ``cui_mapping.csv`` and the images. A run that notebook 08 has not scored yet gets its
ImageCLEF ROUGE-1 (captions) or primary F1 (concepts) computed here with the project's metric code, once
per run, under the protocol name ``explorer``. :mod:`medcap_utils.explorer.app` draws it as widgets.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from medcap_utils.analysis.attention_maps import AttentionMap, attention_index, read_attention_map
from medcap_utils.data.files import ImageSourceError, read_image_bytes
from medcap_utils.data.rocov2 import (
    image_source,
    parse_cuis,
    read_captions,
    read_concepts,
    read_cui_mapping,
    split_files,
)
from medcap_utils.evaluation.runfiles import RunFileError, read_run_dir, read_run_file
from medcap_utils.paths import resolve

SPLITS = ("test", "valid", "train")
TEXT_COLUMNS = {"ID", "reference", "hypothesis"}
#: The metric the explorer sorts by first, in order of preference (all: higher is better).
PREFERRED = ("imageclef2024:rouge1", "coco:rouge1", "explorer:rouge1", "concepts:f1_primary",
             "explorer:f1_primary")


@dataclass
class RunCaption:
    run: str
    caption: str | None  # None: the run has no caption for this image (it covers a subset)
    scores: dict[str, float] = field(default_factory=dict)  # "protocol:metric" -> value


@dataclass
class ConceptCheck:
    """One concept run on one image, against the ground truth (CUIs compared in upper case, as officially)."""

    run: str
    predicted: list[str]
    true_positives: list[str]
    false_positives: list[str]
    missed: list[str]
    scores: dict[str, float] = field(default_factory=dict)


@dataclass
class ImageView:
    image_id: str
    split: str
    image_source: str | None  # a path or zip:// source (medcap_utils.data.rocov2.image_source); None: not found
    reference: str | None
    concepts: list[str]  # ground truth
    concept_names: dict[str, str]  # CUI -> canonical name, where cui_mapping.csv has it
    captions: list[RunCaption]
    concept_runs: list[ConceptCheck]
    attention: dict[str, AttentionMap | None]  # every caption run of the split -> its map, None: no map

    def name(self, cui: str) -> str:
        return self.concept_names.get(cui.upper(), "")


def _runs_dir(reports: Path) -> Path:
    """``reports/runs`` for a reports folder; a folder that itself holds ``*/run.json`` is taken as is."""
    if (reports / "runs").is_dir():
        return reports / "runs"
    if any(reports.glob("*/run.json")):
        return reports
    raise FileNotFoundError(f"{reports}: no runs/ folder and no */run.json; notebooks 02-08 write them")


class ExplorerData:
    """Runs, captions, scores, concepts and maps of one reports folder, read lazily and cached.

    ``data_dir``: the dataset in the ROCOv2 layout (default: each run's own ``data_dir`` from run.json).
    ``runs``: names of the runs to show (default: all).
    """

    def __init__(self, reports="reports", data_dir=None, runs=None):
        self.runs_dir = _runs_dir(resolve(reports))
        self.data_dir = resolve(data_dir) if data_dir else None
        self.info: dict[str, dict] = {}
        self.problems: dict[str, str] = {}  # run -> why it is left out
        for run_json in sorted(self.runs_dir.glob("*/run.json")):
            name = run_json.parent.name
            if runs is not None and name not in runs:
                continue
            try:
                self.info[name] = json.loads(run_json.read_text())
            except (OSError, ValueError) as err:
                self.problems[name] = f"unreadable run.json: {err}"
        self._cache: dict = {}

    def _cached(self, key, make):
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    # --- runs and splits -------------------------------------------------------------------------
    def splits(self) -> list[str]:
        present = {i.get("split") for i in self.info.values()}
        return [s for s in SPLITS if s in present] + sorted(present - set(SPLITS) - {None})

    def runs_of(self, split: str, task: str | None = None) -> list[str]:
        return [r for r, i in self.info.items() if i.get("split") == split and task in (None, i.get("task"))]

    def data_root(self, split: str) -> Path | None:
        """The data folder of ``split``: ``data_dir`` if given, else the first run's that exists."""
        candidates = [self.data_dir] if self.data_dir else [resolve(i["data_dir"]) for r, i in self.info.items()
                                                            if i.get("split") == split and i.get("data_dir")]
        return next((c for c in candidates if c is not None and c.is_dir()), None)

    def predictions(self, run: str) -> dict:
        """``{ID: caption}`` or ``{ID: [CUI, ...]}`` of a run ({} and a problem noted if unreadable)."""
        def read():
            try:
                info, run_file = read_run_dir(self.runs_dir / run)
                return read_run_file(run_file, info["task"])
            except (RunFileError, OSError, KeyError, ValueError) as err:
                self.problems[run] = str(err)
                return {}
        return self._cached(("pred", run), read)

    # --- ground truth ------------------------------------------------------------------------------
    def _eval_column(self, split: str, task: str, column: str) -> dict:
        """``{ID: value}`` of a column of the first scored run's per-image file (ground truth without data)."""
        for run in self.runs_of(split, task):
            for path in sorted((self.runs_dir / run).glob("eval_*/per_image.csv")):
                frame = pd.read_csv(path, dtype=str, keep_default_na=False)
                if column in frame:
                    return dict(zip(frame.ID, frame[column]))
        return {}

    def references(self, split: str) -> dict[str, str]:
        def read():
            root = self.data_root(split)
            path = split_files(root, split)["captions"] if root else None
            if path is not None and path.exists():
                frame = read_captions(path)
                return dict(zip(frame.ID, frame.Caption))
            return self._eval_column(split, "captions", "reference")
        return self._cached(("refs", split), read)

    def true_concepts(self, split: str) -> dict[str, list[str]]:
        def read():
            root = self.data_root(split)
            files = split_files(root, split) if root else {}
            for key in ("concepts", "concepts_manual"):
                if root and files[key].exists():
                    frame = read_concepts(files[key])
                    return dict(zip(frame.ID, frame.CUIs))
            return {i: parse_cuis(v) for i, v in self._eval_column(split, "concepts", "reference").items()}
        return self._cached(("concepts", split), read)

    def concept_names(self) -> dict[str, str]:
        def read():
            for split in self.splits():
                root = self.data_root(split)
                path = split_files(root, split)["cui_mapping"] if root else None
                if path is not None and path.exists():
                    return {c.upper(): n for c, n in read_cui_mapping(path).items()}
            return {}
        return self._cached("names", read)

    def images(self, split: str) -> list[str]:
        """The split's image IDs: those of its captions file, else every ID a run of the split predicts."""
        ids = list(self.references(split))
        if not ids:
            ids = sorted({i for r in self.runs_of(split) for i in self.predictions(r)})
        return ids

    def split_of(self, image_id: str) -> str:
        for split in self.splits():
            if image_id in self.references(split) or any(image_id in self.predictions(r) for r in self.runs_of(split)):
                return split
        raise KeyError(f"{image_id}: in no split of {self.runs_dir}")

    # --- per-image scores --------------------------------------------------------------------------
    def scores(self, run: str) -> pd.DataFrame:
        """Per-image scores of a run: index ID, one column per ``protocol:metric`` (higher is better)."""
        return self._cached(("scores", run), lambda: self._read_scores(run))

    def _read_scores(self, run: str) -> pd.DataFrame:
        run_dir = self.runs_dir / run
        parts = {}
        for path in sorted(run_dir.glob("eval_*/per_image.csv")):
            protocol = path.parent.name[len("eval_"):]
            parts[protocol] = pd.read_csv(path, dtype={"ID": str}, keep_default_na=False, na_values=[""])
        own = run_dir / "per_image.csv"  # notebooks 03 and 04 score their runs themselves
        if own.exists():
            scores_json = run_dir / "scores.json"
            protocol = json.loads(scores_json.read_text()).get("protocol", "run") if scores_json.exists() else "run"
            if protocol not in parts:  # notebook 08's scores of the same protocol cover the whole run
                parts[protocol] = pd.read_csv(own, dtype={"ID": str}, keep_default_na=False, na_values=[""])
        if not parts:
            parts["explorer"] = self._computed_scores(run)
        frames = []
        for protocol, frame in parts.items():
            numeric = [c for c in frame.columns if c not in TEXT_COLUMNS and pd.api.types.is_numeric_dtype(frame[c])]
            name = "concepts" if protocol == "concepts" else protocol
            frames.append(frame.set_index("ID")[numeric].rename(columns=lambda c: f"{name}:{c}"))
        return pd.concat(frames, axis=1) if frames else pd.DataFrame()

    def _computed_scores(self, run: str) -> pd.DataFrame:
        """ROUGE-1 (captions, ImageCLEF preprocessing) or primary F1 (concepts) for a run without score files."""
        info, pred = self.info[run], self.predictions(run)
        if info.get("task") == "concepts":
            from medcap_utils.metrics.concepts import per_image_f1

            f1 = per_image_f1({i: c for i, c in self.true_concepts(info["split"]).items() if i in pred}, pred)
            return pd.DataFrame({"ID": list(f1), "f1_primary": list(f1.values())})
        from medcap_utils.metrics.imageclef import preprocess
        from medcap_utils.metrics.rouge1 import rouge1_f

        refs = self.references(info["split"])
        ids = [i for i in pred if i in refs]
        values = rouge1_f([preprocess(refs[i]) for i in ids], [preprocess(pred[i]) for i in ids]) if ids else []
        return pd.DataFrame({"ID": ids, "rouge1": np.asarray(values, dtype=float)})

    def metrics(self, run: str) -> list[str]:
        """The run's per-image metrics, the preferred one first."""
        columns = list(self.scores(run).columns)
        first = [m for m in PREFERRED if m in columns][:1]
        return first + [c for c in columns if c not in first]

    def image_scores(self, run: str, image_id: str) -> dict[str, float]:
        """``{protocol:metric: value}`` of one image in one run ({} if the run has no score for it)."""
        scores = self.scores(run)
        if image_id not in scores.index:
            return {}
        return {k: float(v) for k, v in scores.loc[image_id].items() if pd.notna(v)}

    def worst(self, run: str, metric: str, n: int = 10) -> pd.DataFrame:
        """The ``n`` images of ``run`` with the lowest ``metric`` (ties by ID; images without a value last)."""
        column = self.scores(run).get(metric)
        if column is None:
            return pd.DataFrame({"ID": [], "value": []})
        frame = pd.DataFrame({"ID": column.index.astype(str), "value": column.to_numpy(dtype=float)})
        return frame.sort_values(["value", "ID"], na_position="last", kind="mergesort").head(n).reset_index(drop=True)

    def _attention_index(self, run: str) -> dict:
        return self._cached(("attention", run), lambda: attention_index(self.runs_dir / run))

    def attention_images(self, run: str) -> list[str]:
        """The images for which ``run`` saved attention maps."""
        return list(self._attention_index(run).get("images", {}))

    # --- one image -----------------------------------------------------------------------------------
    def image_bytes(self, view: ImageView) -> bytes | None:
        if view.image_source is None:
            return None
        try:
            return read_image_bytes(view.image_source)
        except ImageSourceError:
            return None

    def view(self, image_id: str, split: str | None = None) -> ImageView:
        split = split or self.split_of(image_id)
        root = self.data_root(split)
        source = image_source(root, split, image_id) if root else None
        if source is not None and not source.startswith("zip://") and not Path(source).exists():
            source = None
        truth = list(self.true_concepts(split).get(image_id, []))
        captions, checks, attention = [], [], {}
        for run in self.runs_of(split, "captions"):
            captions.append(RunCaption(run, self.predictions(run).get(image_id), self.image_scores(run, image_id)))
            attention[run] = read_attention_map(self.runs_dir / run, image_id, self._attention_index(run))
        for run in self.runs_of(split, "concepts"):
            predicted = list(self.predictions(run).get(image_id, []))
            wanted, got = {c.upper() for c in truth}, {c.upper() for c in predicted}
            checks.append(ConceptCheck(run, predicted, [c for c in predicted if c.upper() in wanted],
                                       [c for c in predicted if c.upper() not in wanted],
                                       [c for c in truth if c.upper() not in got], self.image_scores(run, image_id)))
        return ImageView(image_id, split, source, self.references(split).get(image_id), truth, self.concept_names(),
                         captions, checks, attention)
