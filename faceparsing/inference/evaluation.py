"""Evaluation as the literature measures: one unweighted confusion matrix over a split.

Logits are computed at the model's input size and resized bilinearly to the
label size (512x512) before the argmax; per-class IoU and F1 pool the pixels of
the whole split. `evaluate.py` prints `format_table` and writes the report.
"""

import json
import time

import numpy as np

from faceparsing.classes import CLASS_NAMES, DISPLAY_NAMES, NUM_CLASSES
from faceparsing.files import atomic_path, atomic_write_text
from faceparsing.images import save_png
from faceparsing.inference.predict import predict_dataset_labels
from faceparsing.metrics import confusion_matrix, scores_from_confusion

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


def evaluate(
    model, dataset, label_loader, label_size=512, tta="none", prediction_dir=None, progress=True
):
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

    confusion = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
    started = time.monotonic()
    num_images = 0
    with tqdm(total=len(dataset.ids), unit="img", disable=not progress, desc="evaluate") as bar:
        for start in range(0, len(dataset.ids), dataset.batch_size):
            batch_ids = dataset.ids[start : start + dataset.batch_size]
            # Images only: `dataset[i]` would also merge each label at the model's size,
            # while the comparison needs it at label_size from `label_loader`.
            predictions = predict_dataset_labels(
                model, dataset.root, batch_ids, dataset.image_size, label_size, tta
            )
            for image_id, prediction in zip(batch_ids, predictions, strict=True):
                confusion += confusion_matrix(label_loader(image_id), prediction)
                if prediction_dir is not None:
                    save_png(prediction, prediction_dir / f"{image_id}.png")
            num_images += len(batch_ids)
            bar.update(len(batch_ids))
    return confusion, num_images, time.monotonic() - started


def format_table(report):
    """The terminal report: per-class rows, means, and the published reference rows."""
    lines = [f"{'class':<14}{'IoU':>8}{'F1':>8}{'support':>14}"]
    for name in CLASS_NAMES:
        scores = report["per_class"][name]
        if scores["present"]:
            lines.append(
                f"{DISPLAY_NAMES[name]:<14}{100 * scores['iou']:8.2f}{100 * scores['f1']:8.2f}{scores['support']:14d}"
            )
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

    names = [DISPLAY_NAMES[name] for name in CLASS_NAMES]
    rows = confusion.sum(axis=1, keepdims=True)
    normalised = np.divide(
        confusion, rows, out=np.zeros(confusion.shape, dtype=np.float64), where=rows > 0
    )
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
    axis.set(
        ylim=(0, 1), title=f"Per-class scores ({report['split']}, {report['num_images']} images)"
    )
    axis.legend()
    figure.tight_layout()
    with atomic_path(out_dir / "per_class.png") as temp_path:
        figure.savefig(temp_path, dpi=100)
    plt.close(figure)


def build_report(confusion, checkpoint, split, num_images, tta):
    report = scores_from_confusion(confusion)
    report.update(
        {"checkpoint": str(checkpoint), "split": split, "num_images": num_images, "tta": tta}
    )
    report["confusion_matrix"] = confusion.tolist()
    return report


def write_report(report, confusion, out_dir):
    """report.json, confusion.png and per_class.png in `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "report.json", json.dumps(report, indent=2))
    plot_report(confusion, report, out_dir)
