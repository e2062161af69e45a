"""Draw face-parsing overlays on your photos or on dataset samples.

Usage:
    python visualize.py --checkpoint runs/demo/best.keras --images "photos/*.jpg" --out overlays
    python visualize.py --checkpoint runs/demo/best.keras --data_root data/demo --split val --num 8 --out panels

Photos of any size, aspect ratio and mode are letterboxed to the model's input
size and the prediction is mapped back to the photo's own size. Dataset samples
are predicted exactly as `evaluate.py` does and compared at label resolution.
The model was trained on aligned, centred CelebA-HQ faces: crop your photo
around one face.
"""

import sys
from pathlib import Path

import numpy as np

from faceparsing import cli
from faceparsing.checkpoints import load_checkpoint, run_config
from faceparsing.data.layout import MASK_SIZE, SPLITS, split_ids
from faceparsing.data.samples import load_image, merge_masks
from faceparsing.errors import ConfigError, DatasetError, ImageReadError
from faceparsing.images import list_images, read_rgb, save_png
from faceparsing.inference import overlay
from faceparsing.inference.predict import parse_photo, predict_dataset_labels


def parse_args(argv):
    parser = cli.ArgumentParser(description="Overlay face parsing on photos or dataset samples.")
    parser.add_argument("--checkpoint", required=True, help=".keras checkpoint")
    parser.add_argument("--images", help="photo file, folder or glob pattern")
    parser.add_argument(
        "--data_root", help="dataset root: draw photo | truth | prediction | errors"
    )
    parser.add_argument("--split", default="val", choices=SPLITS)
    parser.add_argument("--num", type=int, default=8, help="dataset samples to draw")
    parser.add_argument("--seed", type=int, default=0, help="picks the dataset samples")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--alpha", type=float, default=0.5, help="overlay opacity in [0, 1]")
    parser.add_argument(
        "--save_masks", action="store_true", help="also write label PNGs at the photo's size"
    )
    parser.add_argument("--image_size", type=int, help="model input size (default: the run's)")
    args = parser.parse_args(argv)
    if (args.images is None) == (args.data_root is None):
        parser.error("give exactly one of --images or --data_root")
    if not 0.0 <= args.alpha <= 1.0:
        parser.error(f"--alpha must lie in [0, 1], got {args.alpha}")
    return args


def visualize_photos(model, paths, size, out_dir, alpha, save_masks):
    """Write `<stem>_overlay.png` (and `<stem>_mask.png`) per photo; return the bad files' errors."""
    problems = []
    for path in paths:
        try:
            image = read_rgb(path)
        except ImageReadError as error:
            problems.append(str(error))
            continue
        label = parse_photo(model, image, size)
        save_png(overlay.photo_panel(image, label, alpha), out_dir / f"{path.stem}_overlay.png")
        if save_masks:
            save_png(label, out_dir / f"{path.stem}_mask.png")
        print(f"{path} -> {out_dir / (path.stem + '_overlay.png')}")
    return problems


def visualize_dataset(model, data_root, split, num, seed, size, out_dir):
    """Panels photo | truth | prediction | errors for `num` samples, plus grid.png."""
    ids = split_ids(data_root, split)
    if not ids:
        raise DatasetError(f"split '{split}' of {data_root} has no images")
    chosen = sorted(
        np.random.default_rng(seed).choice(ids, size=min(num, len(ids)), replace=False).tolist()
    )
    panels = []
    for image_id in chosen:
        truth = merge_masks(data_root, image_id)
        prediction = predict_dataset_labels(model, data_root, [image_id], size, MASK_SIZE)[0]
        photo = load_image(data_root, image_id, MASK_SIZE)
        panels.append(overlay.dataset_panel(photo, truth, prediction))
        save_png(panels[-1], out_dir / f"{image_id}_panel.png")
        accuracy = float((truth == prediction).mean())
        print(
            f"image {image_id}: pixel accuracy {accuracy:.3f} -> {out_dir / f'{image_id}_panel.png'}"
        )
    save_png(overlay.stack_panels(panels), out_dir / "grid.png")


def report_problems(problems, num_files):
    """Exit status of a photo run: 0, or 1 after listing the files that failed."""
    if len(problems) == num_files == 1:
        raise ImageReadError(problems[0])  # the one photo asked for is unusable: a usage error
    if not problems:
        return 0
    print(f"{len(problems)} of {num_files} files could not be processed:", file=sys.stderr)
    for problem in problems:
        print(f"  {problem}", file=sys.stderr)
    return 1


def run(args):
    size = args.image_size or run_config(args.checkpoint).image_size
    out_dir = Path(args.out)
    if args.images is not None:
        paths = list_images(args.images)
        if not paths:
            raise ConfigError(f"--images {args.images!r} matches no file")
    model = load_checkpoint(args.checkpoint)
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.data_root is not None:
        visualize_dataset(model, args.data_root, args.split, args.num, args.seed, size, out_dir)
        return 0
    problems = visualize_photos(model, paths, size, out_dir, args.alpha, args.save_masks)
    return report_problems(problems, len(paths))


def main(argv=None):
    return cli.run_command(run, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
