"""``medcap``: the project's one command (``[project.scripts]`` in pyproject.toml; ``make env`` installs it).

    medcap --help                      every command, one line each
    medcap COMMAND --help              that command's own options
    medcap data synth --out data/demo  (the Makefile's recipes and the README call ``medcap``)

Each command is the ``main(argv, prog)`` of one module, which holds its only argparse definition; this file
only maps names to modules and imports the chosen one, so ``medcap --help`` starts fast and ``python -m
<module>`` keeps working (papermill's notebooks, ``accelerate launch -m medcap_utils.training.blip``).
``python -m medcap_utils.testing`` stays a developer command (the smoke fixtures, the explorer screenshot).

Exit status: the command's own (0 done; 1 problems found or a run that failed; 2 a mistake in the input or
the command line, printed as one line on stderr).
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import NamedTuple

DESCRIPTION = "medcap: medical image captioning on ROCOv2, reproducible (the notebooks' commands)."


class Command(NamedTuple):
    module: str
    help: str


#: name -> the module whose ``main(argv, prog)`` runs it, and the line ``medcap --help`` shows
COMMANDS: dict[str, Command] = {
    "data": Command("medcap_utils.data.__main__",
                    "check, synthesize, cache or subset a dataset (ROCOv2 layout)"),
    "reproduce": Command("medcap_utils.runner.reproduce",
                         "run every notebook with a profile (make reproduce)"),
    "train": Command("medcap_utils.training.blip", "fine-tune BLIP with a paper's recipe"),
    "caption": Command("medcap_utils.runner.caption", "caption images or a dataset split with a trained BLIP"),
    "evaluate": Command("medcap_utils.evaluation.evaluate",
                        "score a caption or concept run file (COCO, ImageCLEF)"),
    "bench": Command("medcap_utils.runner.bench", "time BLIP training and decoding, plain vs fast"),
    "loss-curves": Command("medcap_utils.runner.loss_curves",
                           "loss curves of fast vs plain BLIP training, fp32/bf16"),
    "repeat-check": Command("medcap_utils.runner.repeat_check",
                            "run a profile twice; every value must match"),
    "badges": Command("medcap_utils.runner.colab",
                      "write or check the notebooks' Colab badges (make badges)"),
    "claims": Command("medcap_utils.evaluation.claims_report",
                      "each paper's claims with measured verdicts (make claims)"),
    "models": Command("medcap_utils.hub", "list or download a profile's hub checkpoints (make models)"),
    "standins": Command("medcap_utils.training.standins",
                        "pretrain the demo's stand-in models on the general synthetic domain"),
}


def parser() -> argparse.ArgumentParser:
    """The top-level help only, one line per command: the commands' options live in their modules."""
    listing = "\n".join(f"  {name:<14}{command.help}" for name, command in COMMANDS.items())
    ap = argparse.ArgumentParser(prog="medcap", description=DESCRIPTION,
                                 epilog=f"commands:\n{listing}\n\n`medcap COMMAND --help` shows a command's options.",
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--version", action="version", version=f"medcap {_version()}")
    ap.add_argument("command", metavar="COMMAND", help="one of the commands below")
    ap.add_argument("args", metavar="...", nargs=argparse.REMAINDER, help="the command's own arguments")
    return ap


def _version() -> str:
    from medcap_utils import __version__

    return __version__


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-"):  # --help, --version, or nothing: the listing
        ap = parser()
        if not argv:
            ap.print_help(sys.stderr)
            return 2
        ap.parse_args(argv)  # prints the help or the version and exits 0, or refuses an unknown option
        return 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"medcap: error: unknown command {name!r}; commands: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name].module)
    return module.main(rest, prog=f"medcap {name}")


if __name__ == "__main__":
    raise SystemExit(main())
