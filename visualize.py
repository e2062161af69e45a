"""Draw face-parsing overlays on your photos or on dataset samples.

Usage:
    python visualize.py --checkpoint runs/demo/best.keras --images "photos/*.jpg" --out overlays
    python visualize.py --checkpoint runs/demo/best.keras --data_root data/demo --split val --num 8 --out panels

Photos of any size, aspect ratio and mode are letterboxed to the model's input
size and the prediction is mapped back to the photo's own size. The model was
trained on aligned, centred CelebA-HQ faces: crop your photo around one face.
"""

import argparse
import os
import sys
from pathlib import Path

# Keep TensorFlow's C++ start-up chatter out of the output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from face_classes import CLASS_NAMES, DISPLAY_NAMES, PALETTE, colorize
from io_utils import report_user_error


def parse_args(argv):
    parser = argparse.ArgumentParser(description="Overlay face parsing on photos or dataset samples.")
    parser.add_argument("--checkpoint", required=True, help=".keras checkpoint")
    parser.add_argument("--images", help="photo file, folder or glob pattern")
    parser.add_argument("--data_root", help="dataset root: draw photo | truth | prediction | errors")
    parser.add_argument("--split", default="val", choices=("train", "val", "test", "all"))
    parser.add_argument("--num", type=int, default=8, help="dataset samples to draw")
    parser.add_argument("--seed", type=int, default=0, help="picks the dataset samples")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--alpha", type=float, default=0.5, help="overlay opacity in [0, 1]")
    parser.add_argument("--save_masks", action="store_true", help="also write label PNGs at the photo's size")
    parser.add_argument("--image_size", type=int, help="model input size (default: the run's)")
    args = parser.parse_args(argv)
    if (args.images is None) == (args.data_root is None):
        parser.error("give exactly one of --images or --data_root")
    if not 0.0 <= args.alpha <= 1.0:
        parser.error(f"--alpha must lie in [0, 1], got {args.alpha}")
    return args


def model_input_size(checkpoint, override=None):
    """The run's `image_size` (from config.yaml beside the checkpoint), unless overridden."""
    if override:
        return override
    import config as config_lib

    saved = Path(checkpoint).parent / "config.yaml"
    return config_lib.load_run_config(saved).image_size if saved.exists() else 512


def letterbox(image, size):
    """Fit (H, W, 3) into a size x size canvas, keeping the aspect ratio.

    Returns the canvas and the box (top, left, height, width) the photo occupies.
    """
    height, width = image.shape[:2]
    scale = size / max(height, width)
    new_height, new_width = max(1, round(height * scale)), max(1, round(width * scale))
    resized = np.asarray(Image.fromarray(image).resize((new_width, new_height), Image.BILINEAR))
    canvas = np.zeros((size, size, 3), dtype=np.uint8)
    top, left = (size - new_height) // 2, (size - new_width) // 2
    canvas[top : top + new_height, left : left + new_width] = resized
    return canvas, (top, left, new_height, new_width)


def parse_photo(model, image, size):
    """Label map (H, W) of a photo of any size, at the photo's own resolution."""
    from evaluate import resize_logits_to

    canvas, (top, left, height, width) = letterbox(image, size)
    logits = np.asarray(model.predict_on_batch(canvas[None].astype(np.float32)), dtype=np.float32)
    logits = logits[:, top : top + height, left : left + width]
    return resize_logits_to(logits, image.shape[:2])[0].argmax(-1).astype(np.uint8)


def blend(image, label, alpha):
    colours = colorize(label).astype(np.float32)
    mixed = np.where(label[..., None] > 0, (1 - alpha) * image + alpha * colours, image)
    return mixed.astype(np.uint8)


def legend(labels, height):
    """A column listing the classes present in any of `labels`, with their colours."""
    present = sorted(set(np.unique(np.concatenate([np.unique(label) for label in labels]))))
    font = ImageFont.load_default(size=max(10, height // 40))
    row = max(14, height // 30)
    panel = Image.new("RGB", (max(150, height // 4), max(height, row * (len(present) + 1))), "white")
    draw = ImageDraw.Draw(panel)
    for index, class_id in enumerate(present):
        y = 4 + index * row
        draw.rectangle((4, y, 4 + row - 4, y + row - 4), fill=tuple(int(c) for c in PALETTE[class_id]), outline="black")
        draw.text((row + 6, y), DISPLAY_NAMES[CLASS_NAMES[class_id]], fill="black", font=font)
    return np.asarray(panel)[:height] if panel.height >= height else np.asarray(panel)


def side_by_side(tiles, labels):
    height = tiles[0].shape[0]
    key = legend(labels, height)
    padded_key = np.full((height, key.shape[1], 3), 255, dtype=np.uint8)
    padded_key[: key.shape[0]] = key[:height]
    return np.concatenate(tiles + [padded_key], axis=1)


def error_map(truth, prediction):
    """White where prediction and truth agree, the predicted colour where they differ."""
    errors = np.full(truth.shape + (3,), 255, dtype=np.uint8)
    wrong = truth != prediction
    errors[wrong] = PALETTE[prediction[wrong]]
    return errors


def save_png(array, path):
    from io_utils import atomic_path

    with atomic_path(path) as temp_path:
        Image.fromarray(array).save(temp_path, format="PNG")


def visualize_photos(model, paths, size, out_dir, alpha, save_masks):
    """Write `<stem>_overlay.png` (and `<stem>_mask.png`) per photo; return the bad files' errors."""
    from image_io import ImageReadError, read_rgb

    problems = []
    for path in paths:
        try:
            image = read_rgb(path)
        except ImageReadError as error:
            problems.append(str(error))
            continue
        label = parse_photo(model, image, size)
        panel = side_by_side([image, colorize(label), blend(image, label, alpha)], [label])
        save_png(panel, out_dir / f"{path.stem}_overlay.png")
        if save_masks:
            save_png(label, out_dir / f"{path.stem}_mask.png")
        print(f"{path} -> {out_dir / (path.stem + '_overlay.png')}")
    return problems


def visualize_dataset(model, data_root, split, num, seed, size, out_dir, alpha):
    """Panels photo | truth | prediction | errors for `num` samples, plus grid.png."""
    from data_generator import merge_masks, split_ids
    from image_io import read_rgb

    ids = split_ids(data_root, split)
    if not ids:
        raise ValueError(f"split '{split}' of {data_root} has no images")
    chosen = sorted(np.random.default_rng(seed).choice(ids, size=min(num, len(ids)), replace=False).tolist())
    panels = []
    for image_id in chosen:
        truth = merge_masks(data_root, image_id)
        photo = np.asarray(Image.fromarray(read_rgb(Path(data_root) / "CelebA-HQ-img" / f"{image_id}.jpg")).resize(truth.shape[::-1], Image.BILINEAR))
        prediction = parse_photo(model, photo, size)
        tiles = [blend(photo, prediction, 0.0), colorize(truth), colorize(prediction), error_map(truth, prediction)]
        panel = side_by_side(tiles, [truth, prediction])
        save_png(panel, out_dir / f"{image_id}_panel.png")
        panels.append(panel)
        accuracy = float((truth == prediction).mean())
        print(f"image {image_id}: pixel accuracy {accuracy:.3f} -> {out_dir / f'{image_id}_panel.png'}")
    grid_width = max(panel.shape[1] for panel in panels)
    grid = np.full((sum(p.shape[0] for p in panels), grid_width, 3), 255, dtype=np.uint8)
    top = 0
    for panel in panels:
        grid[top : top + panel.shape[0], : panel.shape[1]] = panel
        top += panel.shape[0]
    thumbnail = Image.fromarray(grid)
    thumbnail.thumbnail((2048, 8192))
    save_png(np.asarray(thumbnail), out_dir / "grid.png")


def main(argv=None):
    args = parse_args(argv)
    try:
        return run(args)
    except (ValueError, OSError) as error:
        return report_user_error(error)


def run(args):
    from checkpoints import load_checkpoint
    from image_io import list_images

    size = model_input_size(args.checkpoint, args.image_size)
    out_dir = Path(args.out)
    if args.images is not None:
        paths = list_images(args.images)
        if not paths:
            raise ValueError(f"--images {args.images!r} matches no file")
    model = load_checkpoint(args.checkpoint)
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.data_root is not None:
        visualize_dataset(model, args.data_root, args.split, args.num, args.seed, size, out_dir, args.alpha)
        return 0
    problems = visualize_photos(model, paths, size, out_dir, args.alpha, args.save_masks)
    if len(problems) == len(paths) == 1:
        raise ValueError(problems[0])  # the one photo asked for is unusable: a usage error
    if problems:
        print(f"{len(problems)} of {len(paths)} files could not be processed:", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
