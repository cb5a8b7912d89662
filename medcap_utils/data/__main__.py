"""``python -m medcap_utils.data check DIR`` | ``synth --out DIR --seed N`` | ``cache DIR --size N``."""
from __future__ import annotations

import argparse
import sys
import time


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m medcap_utils.data", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    check = sub.add_parser("check", help="validate a dataset directory in the ROCOv2 layout")
    check.add_argument("root")
    check.add_argument("--splits", nargs="+", default=["train", "valid", "test"])
    check.add_argument("--no-decode", action="store_true", help="skip decoding every image (faster)")
    check.add_argument("--max-lines", type=int, default=200, help="problem lines to print (all are counted)")

    synth = sub.add_parser("synth", help="write the procedurally generated demo dataset")
    synth.add_argument("--out", default="data/demo")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--n-train", type=int, default=1200)
    synth.add_argument("--n-valid", type=int, default=200)
    synth.add_argument("--n-test", type=int, default=200)
    synth.add_argument("--zip", action="store_true", help="also write {split}_images.zip like Zenodo")

    cache = sub.add_parser("cache", help="build the uint8 image cache for a resolution")
    cache.add_argument("root")
    cache.add_argument("--size", type=int, nargs="+", default=[224])
    cache.add_argument("--splits", nargs="+", default=["train", "valid", "test"])

    args = parser.parse_args(argv)
    if args.command == "check":
        from medcap_utils.data.check import check_dataset

        report = check_dataset(args.root, splits=args.splits, decode=not args.no_decode)
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
    if args.command == "cache":
        from medcap_utils.data.cache import get_image_cache

        for split in args.splits:
            for size in args.size:
                cache = get_image_cache(args.root, split, size)
                print(f"{split} {size}px: {len(cache)} images -> {cache.path}")
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
