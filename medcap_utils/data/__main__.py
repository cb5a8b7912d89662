"""``python -m medcap_utils.data check DIR`` | ``synth --out DIR --seed N`` | ``synth-general --out DIR --seed N`` |
``cache DIR --size N`` |
``subset --out DIR [--source ID|DIR] [--seed N] [--n-train N --n-valid N --n-test N]``.

Exit status: 0 done (``check``: no problem), 1 problems found or data that cannot be used (one line on
stderr naming the file, line or member, no traceback), 2 a usage mistake (argparse)."""
from __future__ import annotations

import argparse
import sys
import time


def main(argv=None, prog: str | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog or "python -m medcap_utils.data", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    check = sub.add_parser("check", help="validate a dataset directory in the ROCOv2 layout")
    check.add_argument("root")
    check.add_argument("--splits", nargs="+", default=["train", "valid", "test"])
    check.add_argument("--no-decode", action="store_true",
                       help="skip decoding every image (faster); zip members are still verified (present, CRC)")
    check.add_argument("--max-lines", type=int, default=200, help="problem lines to print (all are counted)")

    synth = sub.add_parser("synth", help="write the procedurally generated demo dataset")
    synth.add_argument("--out", default="data/demo")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--n-train", type=int, default=1200)
    synth.add_argument("--n-valid", type=int, default=200)
    synth.add_argument("--n-test", type=int, default=200)
    synth.add_argument("--zip", action="store_true", help="also write {split}_images.zip like Zenodo")

    general = sub.add_parser("synth-general", help="write the general synthetic domain (coloured shapes), the demo's "
                                                   "stand-in for web images, on which `medcap standins` pretrains")
    general.add_argument("--out", default="data/general")
    general.add_argument("--seed", type=int, default=0)
    general.add_argument("--n-train", type=int, default=3000)
    general.add_argument("--n-valid", type=int, default=300)

    cache = sub.add_parser("cache", help="build the uint8 image cache for a resolution")
    cache.add_argument("root")
    cache.add_argument("--size", type=int, nargs="+", default=[224])
    cache.add_argument("--splits", nargs="+", default=["train", "valid", "test"])

    sub_set = sub.add_parser("subset", help="write N images per split of ROCOv2 (hub copy or Zenodo files) "
                                           "in the official layout")
    sub_set.add_argument("--out", required=True)
    sub_set.add_argument("--source", default="eltorio/ROCOv2-radiology",
                         help="hub id, a local folder in the hub's parquet layout, or a folder with the Zenodo files")
    sub_set.add_argument("--seed", type=int, default=0)
    sub_set.add_argument("--n", type=int, default=None, help="images in every split (overrides the defaults)")
    sub_set.add_argument("--n-train", type=int, default=None, help="default: 600 (one free Colab T4)")
    sub_set.add_argument("--n-valid", type=int, default=None, help="default: 150")
    sub_set.add_argument("--n-test", type=int, default=None, help="default: 150")
    sub_set.add_argument("--revision", default=None, help="hub commit to read (pins the selection)")
    sub_set.add_argument("--buffer-size", type=int, default=1000, help="rows mixed by the streaming shuffle")
    sub_set.add_argument("--overwrite", action="store_true",
                         help="replace a non-empty --out once the new subset is complete")

    args = parser.parse_args(argv)
    if args.command == "check":
        from medcap_utils.data.check import check_dataset

        try:
            report = check_dataset(args.root, splits=args.splits, decode=not args.no_decode)
        except (OSError, ValueError) as error:  # e.g. an unreadable subset.json: one line, not a traceback
            print(f"error: {error}", file=sys.stderr)
            return 1
        for problem in report.problems[: args.max_lines]:
            print(problem)
        if len(report.problems) > args.max_lines:
            print(f"... {len(report.problems) - args.max_lines} more problems")
        for warning in report.warnings[:20]:
            print(f"warning {warning}")
        print(report.summary())
        return 0 if report.ok else 1
    if args.command == "synth":
        from medcap_utils.data.synth import synthesize

        start = time.perf_counter()
        summary = synthesize(args.out, seed=args.seed, n_train=args.n_train, n_valid=args.n_valid,
                             n_test=args.n_test, zip_images=args.zip)
        print(summary)
        print(f"wrote {args.out} in {time.perf_counter() - start:.1f} s")
        return 0
    if args.command == "synth-general":
        from medcap_utils.data.synth_general import synthesize_general

        summary = synthesize_general(args.out, seed=args.seed, n_train=args.n_train, n_valid=args.n_valid)
        print(summary)
        print(f"wrote {args.out} in {summary['seconds']:.1f} s")
        return 0
    if args.command == "cache":
        from medcap_utils.data.cache import get_image_cache
        from medcap_utils.data.rocov2 import MalformedCSVError

        for split in args.splits:
            for size in args.size:
                try:
                    cache = get_image_cache(args.root, split, size)
                except (MalformedCSVError, OSError) as error:  # ImageDecodeError, DiskFullError, a missing CSV
                    print(f"error: {error}", file=sys.stderr)
                    return 1
                print(f"{split} {size}px: {len(cache)} images -> {cache.path}")
        return 0
    if args.command == "subset":
        from medcap_utils.data.subset import COLAB_T4_SIZES, SubsetError, subset

        given = {"train": args.n_train, "valid": args.n_valid, "test": args.n_test}
        fallback = {split: args.n if args.n is not None else COLAB_T4_SIZES[split] for split in given}
        sizes = {split: fallback[split] if n is None else n for split, n in given.items()}
        start = time.perf_counter()
        try:
            manifest = subset(args.out, sizes, seed=args.seed, source=args.source, revision=args.revision,
                              buffer_size=args.buffer_size, overwrite=args.overwrite)
        except SubsetError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        print(" ".join(f"{split}={len(ids)}" for split, ids in manifest["ids"].items()))
        for name, reason in sorted(manifest["missing"].items()):
            print(f"missing {name}: {reason}")
        print(f"wrote {args.out} in {time.perf_counter() - start:.1f} s")
        return 0
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
