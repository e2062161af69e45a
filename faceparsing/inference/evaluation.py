"""Evaluation as the literature measures: one unweighted confusion matrix over a split.

Logits are computed at the model's input size and resized bilinearly to each
label's size (512x512 for CelebAMask-HQ) before the argmax; per-class IoU and
F1 pool the pixels of the whole split. Classes are the model's class set, or a
merged view of it (`label_views`). `evaluate.py` prints `format_table` and
writes the report.
"""

import json
import time

import numpy as np

from faceparsing.classes import CELEBAMASK_HQ, class_set_of, remap
from faceparsing.errors import ConfigError
from faceparsing.files import atomic_path, atomic_write_text
from faceparsing.images import save_png
from faceparsing.inference.predict import labels_like, load_images, predict_logits
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


def label_views(data_set, model_set, class_map="", classes=""):
    """How labels and predictions meet: (class set compared, truth table, prediction table).

    Args:
        data_set: ClassSet. The classes of the dataset's label files.
        model_set: ClassSet. The classes the checkpoint predicts.
        class_map: str or dict. The run's `class_map` (data -> model classes).
        classes: str or dict. A merged view of the model's classes
            (`--classes hair`: hair against everything else).

    Returns:
        The ClassSet of the comparison, and the (256,) uint8 id tables to apply
        to ground truth and predictions (None: ids as they are).

    Raises:
        ConfigError: the data's classes (after `class_map`) are not the model's.
    """
    truth_table = None
    if class_map:
        data_set, truth_table = remap(data_set, class_map)
    if data_set.names != model_set.names:
        raise ConfigError(
            f"the checkpoint predicts {model_set.num_classes} classes ({', '.join(model_set.names)})"
            f" but the data holds {data_set.num_classes} ({', '.join(data_set.names)}); "
            "evaluate on data of the model's class set"
        )
    if not classes:
        return model_set, truth_table, None
    view, prediction_table = remap(model_set, classes, "--classes")
    truth_table = prediction_table if truth_table is None else prediction_table[truth_table]
    return view, truth_table, prediction_table


def evaluate(
    model, dataset, label_loader, tta="none", prediction_dir=None, progress=True,
    class_set=None, truth_table=None, prediction_table=None,
):  # fmt: skip
    """Accumulate the confusion matrix over `dataset`; return (confusion, num_images, seconds).

    Args:
        model: keras.Model emitting logits.
        dataset: CelebAMaskHQ; its layout, ids (in order), image_size and
            batch_size say what to evaluate.
        label_loader: callable image_id -> label map (any size) in the data's ids.
        tta: str. "none" or "flip". Defaults to "none".
        prediction_dir: Path or None. Where to write `<sample name>.png` label maps.
        progress: bool. Show a progress bar. Defaults to True.
        class_set: ClassSet or None. The classes compared. Defaults to the model's.
        truth_table, prediction_table: (256,) uint8 arrays or None. Id maps
            (`label_views`) applied to ground truth and predictions.
    """
    from tqdm import tqdm

    num_classes = (class_set or class_set_of(model)).num_classes
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    started = time.monotonic()
    num_images = 0
    with tqdm(total=len(dataset.ids), unit="img", disable=not progress, desc="evaluate") as bar:
        for start in range(0, len(dataset.ids), dataset.batch_size):
            batch_ids = dataset.ids[start : start + dataset.batch_size]
            # Images only: `dataset[i]` would also load each label at the model's size,
            # while the comparison needs it at its own size from `label_loader`.
            images = load_images(dataset.layout, batch_ids, dataset.image_size)
            truths = [label_loader(image_id) for image_id in batch_ids]
            predictions = labels_like(predict_logits(model, images, tta), truths)
            for image_id, truth, prediction in zip(batch_ids, truths, predictions, strict=True):
                truth = truth if truth_table is None else truth_table[truth]
                if prediction_table is not None:
                    prediction = prediction_table[prediction]
                confusion += confusion_matrix(truth, prediction, num_classes)
                if prediction_dir is not None:
                    name = dataset.layout.sample_name(image_id)
                    save_png(prediction, prediction_dir / f"{name}.png")
            num_images += len(batch_ids)
            bar.update(len(batch_ids))
    return confusion, num_images, time.monotonic() - started


def format_table(report, class_set=CELEBAMASK_HQ):
    """The terminal report: per-class rows, means, and (for CelebAMask-HQ's 19 classes)
    the published reference rows."""
    lines = [f"{'class':<16}{'IoU':>8}{'F1':>8}{'support':>14}"]
    for class_id, name in enumerate(class_set.names):
        scores = report["per_class"][name]
        label = class_set.display(class_id)
        if scores["present"]:
            lines.append(
                f"{label:<16}{100 * scores['iou']:8.2f}{100 * scores['f1']:8.2f}{scores['support']:14d}"
            )
        else:
            lines.append(f"{label:<16}{'absent':>8}{'absent':>8}{0:14d}")
    lines.append("")
    lines.append(f"{'method':<40}{'mean F1':>9}{'mIoU':>8}{'pix acc':>9}")
    lines.append(
        f"{'this checkpoint':<40}{100 * report['mean_f1']:9.2f}{100 * report['miou']:8.2f}{100 * report['pixel_accuracy']:9.2f}"
    )
    if class_set != CELEBAMASK_HQ:
        return "\n".join(lines)  # the published rows are CelebAMask-HQ's
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


def plot_report(confusion, report, out_dir, class_set=CELEBAMASK_HQ):
    """Write confusion.png (row-normalised) and per_class.png (IoU and F1 bars)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(class_set.display_names)
    num_classes = class_set.num_classes
    rows = confusion.sum(axis=1, keepdims=True)
    normalised = np.divide(
        confusion, rows, out=np.zeros(confusion.shape, dtype=np.float64), where=rows > 0
    )
    figure, axis = plt.subplots(figsize=(9, 8))
    image = axis.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    axis.set_xticks(range(num_classes), names, rotation=90)
    axis.set_yticks(range(num_classes), names)
    axis.set(xlabel="prediction", ylabel="ground truth", title="Confusion matrix (rows sum to 1)")
    figure.colorbar(image, ax=axis, fraction=0.046)
    figure.tight_layout()
    with atomic_path(out_dir / "confusion.png") as temp_path:
        figure.savefig(temp_path, dpi=100)
    plt.close(figure)

    figure, axis = plt.subplots(figsize=(11, 4))
    positions = np.arange(num_classes)
    for offset, key in ((-0.2, "iou"), (0.2, "f1")):
        values = [report["per_class"][name][key] or 0.0 for name in class_set.names]
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


def build_report(confusion, checkpoint, split, num_images, tta, class_set=CELEBAMASK_HQ):
    report = scores_from_confusion(confusion, class_set.names)
    report.update(
        {"checkpoint": str(checkpoint), "split": split, "num_images": num_images, "tta": tta}
    )
    report["class_set"] = class_set.to_config()
    report["confusion_matrix"] = confusion.tolist()
    return report


def write_report(report, confusion, out_dir, class_set=CELEBAMASK_HQ):
    """report.json, confusion.png and per_class.png in `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "report.json", json.dumps(report, indent=2))
    plot_report(confusion, report, out_dir, class_set)
