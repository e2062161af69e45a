"""Evaluate a checkpoint with the face-parsing metrics of the literature.

Usage:
    python evaluate.py --checkpoint runs/demo/best.keras [--split test] [--out DIR]
                       [--data_root ROOT] [--tta flip] [--save_predictions] [--batch_size N]

One unweighted 19x19 confusion matrix is accumulated over the whole split at
label resolution (512x512): logits are computed at the model's input size and
resized bilinearly to the label size before the argmax. Settings not given on
the command line come from the run folder's `config.yaml` beside the checkpoint.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

# Keep TensorFlow's C++ start-up chatter out of the output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

from face_classes import CLASS_NAMES, DISPLAY_NAMES, FLIP_PERMUTATION, NUM_CLASSES
from io_utils import report_user_error

OFFICIAL_TEST_IMAGES = 2824  # size of the official test split

# Published results on the official test split (mean F1 over the 18 foreground
# classes, mIoU over 19), for context next to our numbers.
REFERENCE_RESULTS = (
    ("FaRL ViT-B (CVPR 2022)", 89.56, None),
    ("SegFace Swin-B (AAAI 2025)", 88.96, 81.55),
    ("DML-CSR ResNet-101 (CVPR 2022)", 86.07, 77.81),
    ("AGRNet (2021)", 85.12, None),
    ("EHANet ResNet-34", None, 78.19),
    ("U-Net (retrained by EHANet's authors)", None, 71.61),
)


def parse_args(argv):
    parser = argparse.ArgumentParser(description="Evaluate a face-parsing checkpoint (mIoU, mean F1, per class).")
    parser.add_argument("--checkpoint", required=True, help=".keras checkpoint (its run folder supplies the settings)")
    parser.add_argument("--data_root", help="dataset root (default: the run's data_root)")
    parser.add_argument("--split", default="test", choices=("train", "val", "test", "all"))
    parser.add_argument("--out", help="report folder (default: <run_dir>/eval_<split>)")
    parser.add_argument("--tta", choices=("none", "flip"), default="none", help="flip: average with the mirrored image")
    parser.add_argument("--save_predictions", action="store_true", help="write 512x512 label PNGs")
    parser.add_argument("--batch_size", type=int, default=None)
    parser.add_argument("--image_size", type=int, default=None, help="model input size (default: the run's)")
    parser.add_argument("--max_images", type=int, default=0, help="evaluate only the first N images (0 = all)")
    return parser.parse_args(argv)


def run_settings(args):
    """Merge the run's config.yaml (if any) with the command line."""
    import config as config_lib

    saved = Path(args.checkpoint).parent / "config.yaml"
    run_config = config_lib.load_run_config(saved) if saved.exists() else config_lib.TrainConfig()
    return {
        "data_root": args.data_root or run_config.data_root,
        "image_size": args.image_size or run_config.image_size,
        "batch_size": args.batch_size or run_config.batch_size,
        "out": Path(args.out) if args.out else Path(args.checkpoint).parent / f"eval_{args.split}",
    }


def predict_logits(model, images, tta="none"):
    """Logits (B, S, S, C) of a batch; with tta="flip", averaged with the mirrored pass."""
    logits = np.asarray(model.predict_on_batch(images), dtype=np.float32)
    if tta == "flip":
        mirrored = np.asarray(model.predict_on_batch(images[:, :, ::-1]), dtype=np.float32)
        # Mirror back, then swap left/right channels so "left eye" means the same again.
        logits = 0.5 * (logits + mirrored[:, :, ::-1][..., FLIP_PERMUTATION])
    return logits


def resize_logits_to(logits, shape):
    """Bilinear resize of (B, h, w, C) logits to (B, *shape, C)."""
    if tuple(logits.shape[1:3]) == tuple(shape):
        return logits
    from keras import ops

    return np.asarray(ops.convert_to_numpy(ops.image.resize(logits, tuple(shape), interpolation="bilinear")))


def evaluate(model, dataset, label_loader, label_size=512, tta="none", prediction_dir=None, progress=True):
    """Accumulate the confusion matrix over `dataset`; return (confusion, num_images, seconds).

    Args:
        model: keras.Model emitting logits.
        dataset: CelebAMaskHQ; its root, ids (in order), image_size and
            batch_size say what to evaluate.
        label_loader: callable image_id -> (label_size, label_size) uint8 label map.
        label_size: int. Resolution at which predictions are compared. Defaults to 512.
        tta: str. "none" or "flip". Defaults to "none".
        prediction_dir: Path or None. Where to write `{image_id}.png` label maps.
        progress: bool. Show a progress bar. Defaults to True.
    """
    from tqdm import tqdm

    import metrics
    from data_generator import load_image

    confusion = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
    started = time.monotonic()
    num_images = 0
    with tqdm(total=len(dataset.ids), unit="img", disable=not progress, desc="evaluate") as bar:
        for start in range(0, len(dataset.ids), dataset.batch_size):
            batch_ids = dataset.ids[start : start + dataset.batch_size]
            # Images only: `dataset[i]` would also merge each label at the model's size,
            # while the comparison needs it at label_size from `label_loader`.
            images = np.stack([load_image(dataset.root, image_id, dataset.image_size) for image_id in batch_ids])
            images = images.astype(np.float32)
            predictions = resize_logits_to(predict_logits(model, images, tta), (label_size, label_size)).argmax(-1).astype(np.uint8)
            for image_id, prediction in zip(batch_ids, predictions, strict=True):
                confusion += metrics.confusion_matrix(label_loader(image_id), prediction)
                if prediction_dir is not None:
                    save_label_png(prediction, prediction_dir / f"{image_id}.png")
            num_images += len(images)
            bar.update(len(images))
    return confusion, num_images, time.monotonic() - started


def save_label_png(label, path):
    from PIL import Image

    from io_utils import atomic_path

    with atomic_path(path) as temp_path:
        Image.fromarray(label.astype(np.uint8), mode="L").save(temp_path, format="PNG")


def format_table(report):
    """The terminal report: per-class rows, means, and the published reference rows."""
    lines = [f"{'class':<14}{'IoU':>8}{'F1':>8}{'support':>14}"]
    for name in CLASS_NAMES:
        scores = report["per_class"][name]
        if scores["present"]:
            lines.append(f"{DISPLAY_NAMES[name]:<14}{100 * scores['iou']:8.2f}{100 * scores['f1']:8.2f}{scores['support']:14d}")
        else:
            lines.append(f"{DISPLAY_NAMES[name]:<14}{'absent':>8}{'absent':>8}{0:14d}")
    lines.append("")
    lines.append(f"{'method':<40}{'mean F1':>9}{'mIoU':>8}{'pix acc':>9}")
    lines.append(
        f"{'this checkpoint':<40}{100 * report['mean_f1']:9.2f}{100 * report['miou']:8.2f}{100 * report['pixel_accuracy']:9.2f}"
    )
    for method, mean_f1, miou in REFERENCE_RESULTS:
        lines.append(f"{method:<40}{_cell(mean_f1, 9)}{_cell(miou, 8)}{'-':>9}")
    official = report["split"] == "test" and report["num_images"] == OFFICIAL_TEST_IMAGES
    lines.append(
        f"(published rows: official CelebAMask-HQ test split, {OFFICIAL_TEST_IMAGES} images, 448-512 px; "
        f"this checkpoint: {report['num_images']} images of '{report['split']}'"
        + (")" if official else ", not comparable with the published rows)")
    )
    return "\n".join(lines)


def _cell(value, width):
    return f"{value:{width}.2f}" if value is not None else f"{'-':>{width}}"


def plot_report(confusion, report, out_dir):
    """Write confusion.png (row-normalised) and per_class.png (IoU and F1 bars)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from io_utils import atomic_path

    names = [DISPLAY_NAMES[name] for name in CLASS_NAMES]
    rows = confusion.sum(axis=1, keepdims=True)
    normalised = np.divide(confusion, rows, out=np.zeros(confusion.shape, dtype=np.float64), where=rows > 0)
    figure, axis = plt.subplots(figsize=(9, 8))
    image = axis.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    axis.set_xticks(range(NUM_CLASSES), names, rotation=90)
    axis.set_yticks(range(NUM_CLASSES), names)
    axis.set(xlabel="prediction", ylabel="ground truth", title="Confusion matrix (rows sum to 1)")
    figure.colorbar(image, ax=axis, fraction=0.046)
    figure.tight_layout()
    with atomic_path(out_dir / "confusion.png") as temp_path:
        figure.savefig(temp_path, dpi=100)
    plt.close(figure)

    figure, axis = plt.subplots(figsize=(11, 4))
    positions = np.arange(NUM_CLASSES)
    for offset, key in ((-0.2, "iou"), (0.2, "f1")):
        values = [report["per_class"][name][key] or 0.0 for name in CLASS_NAMES]
        axis.bar(positions + offset, values, width=0.4, label=key.upper())
    axis.set_xticks(positions, names, rotation=60, ha="right")
    axis.set(ylim=(0, 1), title=f"Per-class scores ({report['split']}, {report['num_images']} images)")
    axis.legend()
    figure.tight_layout()
    with atomic_path(out_dir / "per_class.png") as temp_path:
        figure.savefig(temp_path, dpi=100)
    plt.close(figure)


def build_report(confusion, checkpoint, split, num_images, tta):
    import metrics

    report = metrics.scores_from_confusion(confusion)
    report.update({"checkpoint": str(checkpoint), "split": split, "num_images": num_images, "tta": tta})
    report["confusion_matrix"] = confusion.tolist()
    return report


def main(argv=None):
    args = parse_args(argv)
    try:
        return run(args)
    except (ValueError, OSError) as error:
        return report_user_error(error)


def run(args):
    from checkpoints import load_checkpoint
    from data_generator import CelebAMaskHQ, merge_masks, split_ids
    from io_utils import atomic_write_text

    settings = run_settings(args)
    model = load_checkpoint(args.checkpoint)
    ids = split_ids(settings["data_root"], args.split)
    ids = ids[: args.max_images] if args.max_images else ids
    if not ids:
        raise ValueError(f"split '{args.split}' of {settings['data_root']} has no images")
    dataset = CelebAMaskHQ(
        settings["data_root"], split=args.split, ids=ids, batch_size=settings["batch_size"],
        image_size=settings["image_size"], augment=False, shuffle=False,
    )  # fmt: skip
    out_dir = settings["out"]
    prediction_dir = out_dir / "predictions" if args.save_predictions else None
    confusion, num_images, seconds = evaluate(
        model, dataset, lambda image_id: merge_masks(settings["data_root"], image_id), tta=args.tta,
        prediction_dir=prediction_dir,
    )  # fmt: skip
    report = build_report(confusion, args.checkpoint, args.split, num_images, args.tta)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "report.json", json.dumps(report, indent=2))
    plot_report(confusion, report, out_dir)
    print(format_table(report))
    print(f"{num_images} images in {seconds:.1f}s ({num_images / seconds:.1f} img/s). Report: {out_dir / 'report.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
