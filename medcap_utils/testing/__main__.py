"""Fixtures for proving the rocov2 path offline: ``python -m medcap_utils.testing smoke-fixtures --out DIR``;
and ``python -m medcap_utils.testing explorer-screenshot --reports DIR [--data DIR] [--out PNG]``: the results
explorer over a reports folder, run in JupyterLab and headless Chromium (:mod:`medcap_utils.testing.browser`).

Writes ``DIR/hf`` (a Hugging Face cache, the real on-disk layout, holding a tiny stand-in model under every
hub id the rocov2 profile names: :mod:`medcap_utils.testing.local_hub`) and ``DIR/hf-dataset`` (a small
synthesized dataset in the parquet schema of ``eltorio/ROCOv2-radiology``:
:mod:`medcap_utils.testing.hf_dataset`). ``make smoke`` then runs every notebook with ``HF_HOME=DIR/hf``.
"""
from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path


def smoke_fixtures(out: Path, seed: int = 0, n_train: int = 32, n_valid: int = 12, n_test: int = 12) -> dict:
    """Both fixtures under ``out``; the dataset copy holds more images than the smoke profile's subset
    takes, so notebook 00's selection really selects."""
    from medcap_utils.data.synth import synthesize
    from medcap_utils.testing.hf_dataset import write_hf_dataset
    from medcap_utils.testing.local_hub import write_local_hub

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    timings = {}
    start = time.perf_counter()
    hub = write_local_hub(out / "hf", seed=seed)
    timings["local_hub_s"] = round(time.perf_counter() - start, 1)
    start = time.perf_counter()
    demo = out / "demo-source"
    synthesize(demo, seed=seed, n_train=n_train, n_valid=n_valid, n_test=n_test)
    write_hf_dataset(demo, out / "hf-dataset")
    shutil.rmtree(demo)
    timings["hf_dataset_s"] = round(time.perf_counter() - start, 1)
    return {"hub": hub, **timings}


def main(argv=None, prog: str | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog or "python -m medcap_utils.testing", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    fixtures = sub.add_parser("smoke-fixtures", help="local hub + local HF dataset for the rocov2 smoke run")
    fixtures.add_argument("--out", required=True, type=Path)
    fixtures.add_argument("--seed", type=int, default=0)
    shot = sub.add_parser("explorer-screenshot", help="the results explorer over a reports folder, in JupyterLab + "
                                                      "headless Chromium, saved as a screenshot")
    shot.add_argument("--reports", default="reports", type=Path, help="reports folder (or its runs/)")
    shot.add_argument("--data", default=None, type=Path, help="dataset folder (default: each run's data_dir)")
    shot.add_argument("--image", default=None, help="image to switch to (default: the second of the first split)")
    shot.add_argument("--out", default=Path("build/explorer_screenshot_demo.png"), type=Path)
    shot.add_argument("--size", default="1440x1100", help="browser window WIDTHxHEIGHT (taller shows more runs)")
    args = parser.parse_args(argv)
    if args.command == "explorer-screenshot":
        from medcap_utils.testing.browser import explorer_in_browser

        width, height = (int(v) for v in args.size.lower().split("x"))
        explorer_in_browser(args.reports, args.data, args.out, other_image=args.image, window=(width, height))
        return 0
    summary = smoke_fixtures(args.out, seed=args.seed)
    print(f"smoke fixtures in {args.out}: {len(summary['hub'])} stand-in checkpoints in {summary['local_hub_s']} s "
          f"({', '.join(summary['hub'])}); HF dataset copy in {summary['hf_dataset_s']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
