"""Dataset statistics of the kind the seed papers plot (seed 000 Fig. 1-2, seed 002 Fig. 2-3).

Every function takes ``{split: split_frame(...)}`` (see :func:`medcap_utils.data.rocov2.split_frame`)
and returns a tidy DataFrame; the ``plot_*`` functions draw them with seaborn. Used by notebook 01.
"""
from __future__ import annotations

import re
from collections import Counter

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

_WORD = re.compile(r"\S+")
_TOKEN = re.compile(r"[a-z0-9]+")


def word_count(caption: str) -> int:
    """Whitespace-separated words, as a reader would count them."""
    return len(_WORD.findall(caption))


def long_format(frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """All splits stacked with a ``split`` column plus ``words``, ``chars`` and ``n_concepts``."""
    parts = []
    for split, frame in frames.items():
        part = frame[["id", "caption", "cuis", "modality"]].copy()
        part["split"] = split
        part["words"] = part["caption"].map(word_count)
        part["chars"] = part["caption"].str.len()
        part["n_concepts"] = part["cuis"].map(len)
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def caption_length_summary(frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per split and unit (words, characters): count, mean, median, quantiles, max."""
    data = long_format(frames)
    rows = []
    for split, group in data.groupby("split", sort=False):
        for unit in ("words", "chars"):
            s = group[unit]
            rows.append({"split": split, "unit": unit, "images": len(s), "mean": s.mean(), "median": s.median(),
                         "p05": s.quantile(0.05), "p95": s.quantile(0.95), "min": s.min(), "max": s.max()})
    return pd.DataFrame(rows)


def modality_distribution(frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Images per modality and split (``unknown`` when no modality CUI), with the share per split."""
    data = long_format(frames)
    data["modality"] = data["modality"].fillna("unknown")
    table = data.groupby(["split", "modality"], sort=False).size().rename("images").reset_index()
    table["share"] = table["images"] / table.groupby("split")["images"].transform("sum")
    return table.sort_values(["split", "images"], ascending=[True, False], ignore_index=True)


def concepts_per_image(frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """How many images carry 0, 1, 2, ... CUIs, per split."""
    data = long_format(frames)
    return data.groupby(["split", "n_concepts"], sort=False).size().rename("images").reset_index()


def top_concepts(frames: dict[str, pd.DataFrame], names: dict[str, str] | None = None, k: int = 20) -> pd.DataFrame:
    """The ``k`` most frequent CUIs over all splits with their canonical names and document frequency."""
    counts = Counter(c for frame in frames.values() for cuis in frame["cuis"] for c in set(cuis))
    total = sum(len(frame) for frame in frames.values())
    rows = [{"cui": cui, "name": (names or {}).get(cui, ""), "images": n, "share": n / total}
            for cui, n in counts.most_common(k)]
    return pd.DataFrame(rows)


def vocabulary(frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Vocabulary size per split (lower-cased alphanumeric tokens) and how much of it train covers."""
    tokens = {split: Counter(t for c in frame["caption"] for t in _TOKEN.findall(c.lower()))
              for split, frame in frames.items()}
    train = set(tokens.get("train", {}))
    rows = []
    for split, counter in tokens.items():
        vocab = set(counter)
        running = sum(counter.values())
        covered = sum(n for t, n in counter.items() if t in train) if train else float("nan")
        rows.append({"split": split, "vocabulary": len(vocab), "tokens": running,
                     "singletons": sum(1 for n in counter.values() if n == 1),
                     "token_coverage_by_train": covered / running if running else float("nan")})
    return pd.DataFrame(rows)


def plot_caption_lengths(frames: dict[str, pd.DataFrame], clip_quantile: float = 0.99):
    """Histograms of caption length in words and characters, one colour per split."""
    data = long_format(frames)
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    for ax, unit, label in zip(axes, ("words", "chars"), ("words", "characters")):
        upper = data[unit].quantile(clip_quantile)
        sns.histplot(data=data[data[unit] <= upper], x=unit, hue="split", stat="density", common_norm=False,
                     element="step", bins=40, ax=ax)
        ax.set_xlabel(f"caption length ({label}; top {100 * (1 - clip_quantile):.0f}% not shown)")
    fig.tight_layout()
    return fig


def plot_modalities(table: pd.DataFrame):
    """Bar chart of images per modality and split (from :func:`modality_distribution`)."""
    fig, ax = plt.subplots(figsize=(8, 3.6))
    sns.barplot(data=table, x="modality", y="images", hue="split", ax=ax)
    ax.set_ylabel("images")
    fig.tight_layout()
    return fig


def plot_concepts_per_image(table: pd.DataFrame):
    """Bar chart of the number of concepts per image (from :func:`concepts_per_image`)."""
    fig, ax = plt.subplots(figsize=(8, 3.4))
    sns.barplot(data=table, x="n_concepts", y="images", hue="split", ax=ax)
    ax.set_xlabel("concepts per image")
    fig.tight_layout()
    return fig


def plot_top_concepts(table: pd.DataFrame):
    """Horizontal bars of the most frequent concepts, labelled ``name (CUI)``."""
    labels = [f"{n} ({c})" if n else c for c, n in zip(table["cui"], table["name"])]
    fig, ax = plt.subplots(figsize=(8, 0.28 * len(table) + 1))
    sns.barplot(x=table["images"], y=labels, ax=ax, color="steelblue")
    ax.set_xlabel("images")
    fig.tight_layout()
    return fig


def plot_examples(frame: pd.DataFrame, n: int = 8, seed: int = 0, cols: int = 4):
    """A grid of ``n`` random images, each titled with its modality and its full caption (wrapped to
    the panel's width, never shortened); at most :data:`medcap_utils.plotting.MAX_WIDTH_PX` wide."""
    from medcap_utils.data.images import open_rgb
    from medcap_utils.plotting import chars_per_line, fig_width, wrap

    rows = frame.sample(n=min(n, len(frame)), random_state=seed)
    n_rows = (len(rows) + cols - 1) // cols
    width = fig_width(2.7 * cols)
    per_line = chars_per_line(width / cols - 0.1, 7.5)
    titles = [f"{row['modality']}\n" + wrap(row["caption"].strip(), per_line) for _, row in rows.iterrows()]
    lines = max((t.count("\n") + 1 for t in titles), default=1)
    fig, axes = plt.subplots(n_rows, cols, figsize=(width, n_rows * (2.6 + 0.13 * lines)), squeeze=False,
                             layout="constrained")
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (_, row), title in zip(axes.ravel(), rows.iterrows(), titles):
        ax.imshow(open_rgb(row["image_path"]))
        ax.set_title(title, fontsize=7.5, loc="left")
    return fig
