"""Scoring and tabulating what the notebooks produced: ImageCLEF run files (``runfiles``), ``evaluate`` (the command
and its API), one score row and table for every notebook (``scores``), every run scored at once
(``evaluate_runs``), baselines, the caption-use checks, the summaries of
notebook 08 and ``REPORT.md``. May import every layer up to ``training``."""
