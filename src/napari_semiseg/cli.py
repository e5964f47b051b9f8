"""Command line: ``napari-semiseg demo | train | predict | evaluate | methods``.

Bad input prints one line naming the problem, the file and the fix, and exits
with code 2; nothing is written half-way.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

EXIT_BAD_INPUT = 2


class ProgressPrinter:
    """Prints training events as a one-line progress bar on stderr."""

    def __init__(self, stream: Any = None, previews: Path | None = None) -> None:
        self.stream = stream or sys.stderr
        self.previews = previews
        self.last = 0.0
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def __call__(self, event: Any) -> None:
        """Handle one training event."""
        from .engine import PreviewUpdated, StepFinished, TrainingFinished, TrainingStarted

        if isinstance(event, TrainingStarted):
            budget = f", time budget {event.time_budget:g} s" if event.time_budget else ""
            print(
                f"training {event.method} on {event.where}: up to {event.total_steps} steps"
                f"{budget}, {event.n_parameters / 1e6:.2f} M parameters, "
                f"{event.data_summary.get('cells', 0)} annotated cells in "
                f"{event.data_summary.get('annotated_images', 0)} of "
                f"{event.data_summary.get('images', 0)} images",
                file=self.stream,
            )
            for text in event.advice:
                print(f"note: {text}", file=self.stream)
        elif isinstance(event, StepFinished):
            now = time.monotonic()
            if now - self.last < (0.2 if self.tty else 5.0) and event.progress < 1.0:
                return
            self.last = now
            width = 28
            filled = int(width * event.progress)
            bar = "#" * filled + "-" * (width - filled)
            terms = " ".join(f"{k}={v:.3f}" for k, v in list(event.losses.items())[:4])
            line = (
                f"[{bar}] step {event.step}/{event.total_steps} {terms} "
                f"{event.steps_per_second:.1f} it/s, {event.remaining_seconds:.0f} s left"
            )
            print(
                ("\r" + line) if self.tty else line,
                end="" if self.tty else "\n",
                file=self.stream,
                flush=True,
            )
        elif isinstance(event, PreviewUpdated) and self.previews is not None:
            from .io import write_tiff

            for name, array in event.arrays.items():
                path = self.previews / f"step{event.step:06d}_{event.kind}_{name}.tif"
                write_tiff(path, array, overwrite=True)
        elif isinstance(event, TrainingFinished):
            if self.tty:
                print(file=self.stream)
            print(
                f"finished after {event.step} steps in {event.elapsed:.1f} s ({event.reason})",
                file=self.stream,
            )


def _add_train_options(parser: argparse.ArgumentParser) -> None:
    from .methods import METHODS

    parser.add_argument("--images", required=True, type=Path, help="folder of training images")
    parser.add_argument("--labels", required=True, type=Path, help="folder of instance labels")
    parser.add_argument("--masks", type=Path, help="folder of known-pixel masks (optional)")
    parser.add_argument(
        "--method",
        choices=sorted(METHODS),
        help="training method (default unet); a resumed model keeps its own",
    )
    parser.add_argument("--out", required=True, type=Path, help="model file to write (.pt)")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--time-budget", type=float, help="stop after this many seconds")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    parser.add_argument(
        "--float32",
        action="store_true",
        help="train in full precision (default: float16 on CUDA, bfloat16 on CPUs with "
        "bfloat16 hardware, about twice as fast)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--model-size",
        choices=["tiny", "small", "medium", "large"],
        help="architecture preset (default small); a resumed model keeps its own",
    )
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--patch-size", type=int, default=192)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--channel-axis", type=int, help="channel axis of multi-channel images")
    parser.add_argument(
        "--gamma",
        type=float,
        help="intensity gamma after percentile scaling (default 1; 0.5 lifts dim nuclei in "
        "fluorescence of uneven brightness); a resumed model keeps its own",
    )
    parser.add_argument(
        "--core-depth",
        type=float,
        help="interior class = the core of each cell, the pixels deeper than this fraction of "
        "the cell's largest depth (0 = thin borders as in the U-Net paper); a resumed model "
        "keeps its own",
    )
    parser.add_argument("--resume", type=Path, help="continue training from this model file")
    parser.add_argument("--previews", type=Path, help="folder to dump live preview maps into")
    parser.add_argument(
        "--preview-every", type=float, default=30.0, help="seconds between previews"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="method hyper-parameter, e.g. --set dice_weight=0.5 (repeatable)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")


def _parse_settings(pairs: list[str]) -> dict[str, Any]:
    from .errors import SemisegInputError

    settings: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise SemisegInputError(
                f"--set {pair!r} is not KEY=VALUE", "write e.g. --set alpha=0.5"
            )
        key, value = pair.split("=", 1)
        try:
            settings[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            settings[key.strip()] = value
    return settings


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``napari-semiseg`` command."""
    parser = argparse.ArgumentParser(
        prog="napari-semiseg",
        description="Semi-supervised cell segmentation from sparse annotations.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="train, predict and score on the bundled sample data")
    demo.add_argument("--out", type=Path, default=Path("demo_output"))
    demo.add_argument("--steps", type=int, default=400)
    demo.add_argument("--time-budget", type=float, default=120.0)
    demo.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    demo.add_argument("--method", default="unet")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--overwrite", action="store_true")

    _add_train_options(sub.add_parser("train", help="train a model on sparse annotations"))

    pred = sub.add_parser("predict", help="write instance masks for a folder of images")
    pred.add_argument("model", type=Path, help="model file written by train")
    pred.add_argument("--images", required=True, type=Path)
    pred.add_argument("--out", required=True, type=Path, help="folder for the TIFF masks")
    pred.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    pred.add_argument(
        "--tile-size",
        type=int,
        default=512,
        help="tile side in pixels (at least 4 * 2**depth of the network, e.g. 64; rounded up "
        "to a multiple of 2**depth)",
    )
    pred.add_argument(
        "--tta",
        action="store_true",
        help="average the network over the 4 flips of each tile (3-4x slower; not for ppn-auxnet)",
    )
    pred.add_argument(
        "--float32",
        action="store_true",
        help="predict in full precision (default: bfloat16 on CPUs with bfloat16 hardware, "
        "float16 on CUDA; AP50 moved by at most 0.002 in our benchmark)",
    )
    pred.add_argument("--channel-axis", type=int)
    pred.add_argument("--overwrite", action="store_true")

    ev = sub.add_parser("evaluate", help="score masks against ground truth")
    ev.add_argument("--pred", required=True, type=Path)
    ev.add_argument("--truth", required=True, type=Path)
    ev.add_argument("--ignore", type=Path, help="folder of masks of regions not to score")
    ev.add_argument("--exclude-border", action="store_true", help="drop border-touching objects")
    ev.add_argument("--json", type=Path, help="also write the scores to this JSON file")
    ev.add_argument("--overwrite", action="store_true", help="replace an existing --json file")

    sub.add_parser("methods", help="list the training methods and their settings")
    return parser


def _cmd_demo(args: argparse.Namespace) -> int:
    from .api import run_demo

    report = run_demo(
        args.out,
        args.steps,
        args.time_budget,
        args.device,
        args.seed,
        args.method,
        overwrite=args.overwrite,
        callback=ProgressPrinter(),
    )
    print((Path(args.out) / "report.md").read_text())
    print(f"masks written to {report['masks']}")
    return 0


def _ignored_on_resume(args: argparse.Namespace, model: Any) -> str | None:
    """The warning for the options (--method, --core-depth, ...) a resumed model overrides."""
    from .models import PRESETS

    ignored, kept = [], []
    name = model.method.name
    if args.method is not None and args.method != name:
        ignored.append(f"--method {args.method}")
        kept.append(f"method {name}")
    config = model.method.model_config
    if args.model_size is not None and PRESETS[args.model_size] != config:
        size = next((k for k, v in PRESETS.items() if v == config), "custom")
        ignored.append(f"--model-size {args.model_size}")
        kept.append(f"architecture ({size})")
    current = model.method.config.to_dict()
    settings = _parse_settings(args.set)
    changed = [k for k, v in settings.items() if k not in current or current[k] != v]
    if changed:
        ignored.append(f"--set {', '.join(changed)}")
        kept.append("method settings")
    core = model.train_config.core_depth
    if args.core_depth is not None and args.core_depth != core:
        ignored.append(f"--core-depth {args.core_depth}")
        kept.append(f"core depth {core}")
    if not ignored:
        return None
    return (
        f"warning: {' and '.join(ignored)} ignored with --resume: training continues with "
        f"the checkpoint's {' and '.join(kept)}"
    )


def _cmd_train(args: argparse.Namespace) -> int:
    from .api import check_model_file, load_model, train

    check_model_file(args.out, args.resume, args.overwrite)
    resume = None
    if args.resume is not None:
        resume = load_model(args.resume, args.device)
        warning = _ignored_on_resume(args, resume)
        if warning:
            print(warning, file=sys.stderr)
    if args.previews is not None:
        args.previews.mkdir(parents=True, exist_ok=True)
    result = train(
        args.images,
        args.labels,
        args.masks,
        out=args.out,
        overwrite=True,  # an existing --out was refused above unless allowed
        method=args.method or "unet",
        steps=args.steps,
        time_budget=args.time_budget,
        device=args.device,
        seed=args.seed,
        model_size=args.model_size or "small",
        batch_size=args.batch_size,
        patch_size=args.patch_size,
        lr=args.lr,
        amp=not args.float32,
        **({} if args.core_depth is None else {"core_depth": args.core_depth}),
        method_config=_parse_settings(args.set),
        channel_axis=args.channel_axis,
        gamma=args.gamma,
        resume=resume,
        preview_every=args.preview_every if args.previews else 0.0,
        callback=ProgressPrinter(previews=args.previews),
    )
    print(f"model written to {result.checkpoint}")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from .api import predict

    def report(name: str, index: int, total: int) -> None:
        print(f"[{index}/{total}] {name}", file=sys.stderr)

    masks = predict(
        args.model,
        args.images,
        args.out,
        overwrite=args.overwrite,
        device=args.device,
        tile_size=args.tile_size,
        channel_axis=args.channel_axis,
        callback=report,
        tta=args.tta,
        float32=args.float32,
    )
    print(f"{len(masks)} mask(s) written to {args.out}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .errors import SemisegInputError
    from .evaluation import evaluate
    from .io import atomic_write, list_images, match_by_name, read_image
    from .io.tiff import IMAGE_SUFFIXES

    if args.json is not None:
        _check_json_target(args.json, args.overwrite)
    preds = list_images(args.pred, "prediction")
    if not preds:
        raise SemisegInputError(
            f"no predictions found in {args.pred} (looked for {', '.join(IMAGE_SUFFIXES)})",
            "give the folder of predicted masks as --pred",
        )
    truths = match_by_name(preds, args.truth)
    missing = [p.name for p, t in zip(preds, truths, strict=True) if t is None]
    if missing:
        raise SemisegInputError(
            f"no ground truth for {', '.join(missing[:3])}",
            "name ground-truth files like the predictions",
            str(args.truth),
        )
    ignores = match_by_name(preds, args.ignore) if args.ignore else [None] * len(preds)
    scores = evaluate(
        [read_image(p) for p in preds],
        [read_image(t) for t in truths],
        [read_image(i) if i else None for i in ignores],
        exclude_border=args.exclude_border,
    )
    for key in ("ap50", "map", "f1_50", "ap75", "dice", "iou"):
        print(f"{key:>6}: {scores[key]:.4f}")
    print(f"TP/FP/FN at IoU 0.5: {scores['tp50']}/{scores['fp50']}/{scores['fn50']}")
    if args.json is not None:
        text = json.dumps(scores, indent=2)
        atomic_write(args.json, lambda tmp: tmp.write_text(text), overwrite=args.overwrite)
    return 0


def _check_json_target(path: Path, overwrite: bool) -> None:
    """Refuse a --json path in a missing folder, a folder, or an existing file."""
    from .errors import SemisegInputError

    if path.is_dir():
        raise SemisegInputError(
            "the --json path is a folder", "give a file name such as scores.json", str(path)
        )
    if not path.parent.is_dir():
        raise SemisegInputError(
            f"the folder {path.parent} for the --json file does not exist",
            "create it first or give a path in an existing folder",
            str(path),
        )
    if path.exists() and not overwrite:
        raise SemisegInputError(
            "scores file exists and would be overwritten",
            "choose another --json path or pass --overwrite",
            str(path),
        )


def _cmd_methods(args: argparse.Namespace) -> int:
    import dataclasses

    from .methods import METHODS

    for name, cls in METHODS.items():
        print(f"{name}: {cls.label}\n  {cls.description}")
        for f in dataclasses.fields(cls.Config):
            print(f"    {f.name} = {f.default!r}  {f.metadata.get('help', '')}")
    return 0


COMMANDS = {
    "demo": _cmd_demo,
    "train": _cmd_train,
    "predict": _cmd_predict,
    "evaluate": _cmd_evaluate,
    "methods": _cmd_methods,
}


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (2 for bad input).

    Parameters
    ----------
    argv : list of str, optional
        Arguments (``sys.argv[1:]`` when None).

    Returns
    -------
    int
    """
    args = build_parser().parse_args(argv)
    from .engine import TrainingError
    from .errors import SemisegInputError

    try:
        return COMMANDS[args.command](args)
    except (SemisegInputError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except TrainingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
