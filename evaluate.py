"""Evaluate a checkpoint with the face-parsing metrics of the literature.

Usage:
    python evaluate.py --checkpoint runs/demo/best.keras [--split test] [--out DIR]
                       [--data_root ROOT] [--tta flip] [--save_predictions] [--batch_size N]

One unweighted 19x19 confusion matrix is accumulated over the whole split at
label resolution (512x512): logits are computed at the model's input size and
resized bilinearly to the label size before the argmax. Settings not given on
the command line come from the run folder's `config.yaml` beside the checkpoint.
The metrics themselves are `faceparsing.inference.evaluation`.
"""

import sys
from pathlib import Path

from faceparsing import cli
from faceparsing.checkpoints import load_checkpoint, run_config
from faceparsing.data.dataset import CelebAMaskHQ
from faceparsing.data.layout import SPLITS, split_ids
from faceparsing.data.packed import check_release_labels
from faceparsing.data.samples import load_label
from faceparsing.errors import DatasetError
from faceparsing.inference import evaluation
from faceparsing.inference.predict import TTA_MODES


def parse_args(argv):
    parser = cli.ArgumentParser(
        description="Evaluate a face-parsing checkpoint (mIoU, mean F1, per class)."
    )
    parser.add_argument(
        "--checkpoint",
        required=True,
        help=".keras checkpoint (its run folder supplies the settings)",
    )
    parser.add_argument("--data_root", help="dataset root (default: the run's data_root)")
    parser.add_argument("--split", default="test", choices=SPLITS)
    parser.add_argument("--out", help="report folder (default: <run_dir>/eval_<split>)")
    parser.add_argument(
        "--tta", choices=TTA_MODES, default="none", help="flip: average with the mirrored image"
    )
    parser.add_argument("--save_predictions", action="store_true", help="write 512x512 label PNGs")
    parser.add_argument("--batch_size", type=int, default=None)
    parser.add_argument(
        "--image_size", type=int, default=None, help="model input size (default: the run's)"
    )
    parser.add_argument(
        "--max_images", type=int, default=0, help="evaluate only the first N images (0 = all)"
    )
    return parser.parse_args(argv)


def run_settings(args):
    """The run's config.yaml (if any) overridden by the command line."""
    saved = run_config(args.checkpoint)
    return {
        "data_root": args.data_root or saved.data_root,
        "image_size": args.image_size or saved.image_size,
        "batch_size": args.batch_size or saved.batch_size,
        "out": Path(args.out) if args.out else Path(args.checkpoint).parent / f"eval_{args.split}",
    }


def split_dataset(settings, split, max_images):
    ids = split_ids(settings["data_root"], split)
    ids = ids[:max_images] if max_images else ids
    if not ids:
        raise DatasetError(f"split '{split}' of {settings['data_root']} has no images")
    return CelebAMaskHQ(
        settings["data_root"], split=split, ids=ids, batch_size=settings["batch_size"],
        image_size=settings["image_size"], augment=False, shuffle=False,
    )  # fmt: skip


def run(args):
    settings = run_settings(args)
    model = load_checkpoint(args.checkpoint)
    check_release_labels(settings["data_root"])
    dataset = split_dataset(settings, args.split, args.max_images)
    out_dir = settings["out"]
    confusion, num_images, seconds = evaluation.evaluate(
        model, dataset, lambda image_id: load_label(settings["data_root"], image_id),
        tta=args.tta, prediction_dir=out_dir / "predictions" if args.save_predictions else None,
    )  # fmt: skip
    report = evaluation.build_report(confusion, args.checkpoint, args.split, num_images, args.tta)
    evaluation.write_report(report, confusion, out_dir)
    print(evaluation.format_table(report))
    print(
        f"{num_images} images in {seconds:.1f}s ({num_images / seconds:.1f} img/s). Report: {out_dir / 'report.json'}"
    )
    return 0


def main(argv=None):
    return cli.run_command(run, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
