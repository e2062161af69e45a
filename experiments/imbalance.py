"""Class-imbalance study: weighting schemes and losses under one training budget.

Usage:
    python -m experiments.imbalance [--seeds 0 1] [--out docs] [--quick]

Trains every variant (loss x class-weighting scheme) on the synthetic set with
the same recipe, budget and seeds, evaluates each `best.keras` on the test split
at label resolution, and writes `<out>/imbalance.md` (tables and a
recommendation), `<out>/imbalance.png` (rare-class F1 per variant) and
`<out>/imbalance_results.json` (every run's raw scores). Finished runs are
reused, so an interrupted study resumes where it stopped.
"""

import argparse
import csv
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

RARE_CLASSES = ("eye_g", "hat", "ear_r", "neck_l")
BASELINE = "ce_none"

# name -> (loss, class_weights, max_class_weight)
VARIANTS = {
    "ce_none": ("cross_entropy", "none", 0.0),
    "ce_per_image": ("cross_entropy", "per_image", 0.0),
    "ce_inverse_frequency_max10": ("cross_entropy", "inverse_frequency", 10.0),
    "ce_median_frequency": ("cross_entropy", "median_frequency", 0.0),
    "ce_enet": ("cross_entropy", "enet", 0.0),
    "focal_none": ("focal", "none", 0.0),
    "dice_ce_none": ("dice_ce", "none", 0.0),
    "lovasz_none": ("lovasz", "none", 0.0),
}

# The demo recipe (configs/demo.yaml) cut to what 14 runs can afford in ~45 min on a 2-core
# CPU shared with other jobs (measured there: ~35 s per 25-step epoch of batch 16 at 64 px,
# plus ~50 s of graph tracing and checkpointing per run). Batch 8 buys twice the updates for
# the same compute. Lovasz is left out of the default study for the same reason.
STUDY_BUDGET = {
    "demo_images": 500,  # 400 train / 50 val / 50 test
    "image_size": 64,
    "batch_size": 8,
    "epochs": 3,
    "max_val_images": 8,
    "label_size": 512,
    "variants": [name for name in VARIANTS if name != "lovasz_none"],
}
QUICK_BUDGET = {
    "demo_images": 20,
    "image_size": 32,
    "batch_size": 4,
    "epochs": 1,
    "max_val_images": 2,
    "label_size": 32,
    "variants": ["ce_none", "ce_median_frequency"],
}
MODEL = {
    "backbone": "mobilenetv2", "weights": "none", "alpha": 0.5, "aspp_filters": 64,
    "decoder_filters": 64, "batchnorm_momentum": 0.9, "learning_rate": 0.003,
    "warmup_epochs": 0.5, "jit_compile": "false",  # XLA compiling costs more than it saves here
}  # fmt: skip
# Eager steps: tracing the train step costs more than a smoke run trains.
QUICK_MODEL = {
    **MODEL,
    "alpha": 0.35,
    "aspp_filters": 16,
    "decoder_filters": 16,
    "run_eagerly": True,
}


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="training seeds")
    parser.add_argument("--out", default="docs", help="folder for the report, chart and json")
    parser.add_argument(
        "--data_root", default="data/imbalance", help="synthetic set (written if absent)"
    )
    parser.add_argument("--runs", default="runs/imbalance", help="folder for the run folders")
    parser.add_argument("--quick", action="store_true", help="tiny smoke version (seconds)")
    return parser.parse_args(argv)


def run_config(name, seed, budget, model, data_root, runs_dir):
    """The TrainConfig of one variant and seed: everything but loss and weights is shared."""
    from faceparsing import config as config_lib

    loss, class_weights, max_class_weight = VARIANTS[name]
    overrides = {
        **model,
        "data_root": str(data_root), "demo_images": budget["demo_images"],
        "image_size": budget["image_size"], "batch_size": budget["batch_size"],
        "epochs": budget["epochs"], "max_val_images": budget["max_val_images"],
        "loss": loss, "class_weights": class_weights, "max_class_weight": max_class_weight,
        "seed": seed, "run_dir": str(Path(runs_dir) / f"{name}_seed{seed}"), "verbose": 0,
    }  # fmt: skip
    return config_lib.apply_overrides(config_lib.TrainConfig(), overrides, f"variant {name}")


def study_wall_seconds(run_dirs):
    """From the first run's start (config.yaml written) to the last run's end (result.json).

    Measured from the files, so a study resumed or split over processes is timed honestly.
    """
    starts = [(Path(run_dir) / "config.yaml").stat().st_mtime for run_dir in run_dirs]
    ends = [(Path(run_dir) / "result.json").stat().st_mtime for run_dir in run_dirs]
    return max(ends) - min(starts)


def training_seconds(run_dir):
    with open(Path(run_dir) / "metrics.csv", newline="") as handle:
        return sum(float(row["seconds"]) for row in csv.DictReader(handle))


def evaluate_run(config, label_size, labels):
    """Scores of the run's best.keras on the test split, compared at `label_size`."""
    from faceparsing import metrics
    from faceparsing.checkpoints import load_checkpoint
    from faceparsing.data.dataset import CelebAMaskHQ
    from faceparsing.data.layout import split_ids
    from faceparsing.inference import evaluation

    model = load_checkpoint(Path(config.run_dir) / "best.keras")
    dataset = CelebAMaskHQ(
        config.data_root, split="test", ids=split_ids(config.data_root, "test"),
        batch_size=config.batch_size, image_size=config.image_size, augment=False, shuffle=False,
    )  # fmt: skip
    # `labels` gives label_size maps; predictions are compared at each label's size.
    confusion, num_images, _ = evaluation.evaluate(model, dataset, labels, progress=False)
    report = metrics.scores_from_confusion(confusion)
    return {
        "num_images": num_images,
        "miou": report["miou"],
        "mean_f1": report["mean_f1"],
        "per_class": {
            name: {"iou": s["iou"], "f1": s["f1"]} for name, s in report["per_class"].items()
        },
    }


def label_loader(data_root, label_size):
    """image_id -> merged label at `label_size`, memoised (every run reads the same labels)."""
    from faceparsing.data.release import merge_masks
    from faceparsing.images import resize_nearest

    memory = {}

    def load(image_id):
        if image_id not in memory:
            label = merge_masks(data_root, image_id)
            memory[image_id] = (
                label
                if label.shape[0] == label_size
                else resize_nearest(label, (label_size, label_size))
            )
        return memory[image_id]

    return load


def run_one(name, seed, budget, model, data_root, runs_dir, labels):
    """Train (or reuse) one variant/seed and return its result record."""
    import keras

    from faceparsing.files import atomic_write_text
    from faceparsing.training import trainer

    config = run_config(name, seed, budget, model, data_root, runs_dir)
    result_path = Path(config.run_dir) / "result.json"
    if result_path.exists():
        return json.loads(result_path.read_text())
    keras.utils.clear_session()
    print(f"[imbalance] {name} seed {seed}", flush=True)
    trainer.train(config)
    result = {
        "variant": name, "seed": seed, "loss": config.loss, "class_weights": config.class_weights,
        "max_class_weight": config.max_class_weight,
        "train_seconds": training_seconds(config.run_dir),
        **evaluate_run(config, budget["label_size"], labels),
    }  # fmt: skip
    atomic_write_text(result_path, json.dumps(result, indent=2))
    return result


# ---------------------------------------------------------------------------
# Summary, recommendation, report
# ---------------------------------------------------------------------------


def metric_values(runs, key):
    """Per-seed values of `key` ("miou", "mean_f1", "train_seconds", "rare_f1", "<class>/f1")."""
    values = []
    for run in runs:
        if key == "rare_f1":
            scores = [run["per_class"][name]["f1"] for name in RARE_CLASSES]
            value = np.nanmean([np.nan if score is None else score for score in scores])
        elif "/" in key:
            class_name, score = key.split("/")
            value = run["per_class"][class_name][score]
        else:
            value = run[key]
        values.append(np.nan if value is None else float(value))
    return np.array(values)


SUMMARY_KEYS = (
    ["miou", "mean_f1", "rare_f1", "train_seconds"]
    + [f"{name}/f1" for name in RARE_CLASSES]
    + [f"{name}/iou" for name in RARE_CLASSES]
)


def summarise(results, variants):
    """variant -> key -> {mean, half_range, min, max, values} over seeds."""
    summary = {}
    for name in variants:
        runs = [run for run in results if run["variant"] == name]
        summary[name] = {}
        for key in SUMMARY_KEYS:
            with warnings.catch_warnings():  # a class absent from every run stays NaN
                warnings.simplefilter("ignore", RuntimeWarning)
                values = metric_values(runs, key)
                summary[name][key] = {
                    "mean": float(np.nanmean(values)),
                    "half_range": float((np.nanmax(values) - np.nanmin(values)) / 2),
                    "min": float(np.nanmin(values)),
                    "max": float(np.nanmax(values)),
                    "values": [float(value) for value in values],
                }
    return summary


def compare(summary, key):
    """Each variant's difference from the baseline on `key`, and whether seed ranges separate."""
    base = summary[BASELINE][key]
    comparison = {}
    for name, scores in summary.items():
        if name == BASELINE:
            continue
        variant = scores[key]
        if variant["min"] > base["max"]:
            verdict = "better"
        elif variant["max"] < base["min"]:
            verdict = "worse"
        else:
            verdict = "within seed spread"
        comparison[name] = {"difference": variant["mean"] - base["mean"], "verdict": verdict}
    return comparison


def recommend(summary, num_seeds):
    """A recommendation that follows from the numbers alone (see the report for the rule)."""
    rare, miou = compare(summary, "rare_f1"), compare(summary, "miou")
    winners = [
        name for name in rare
        if rare[name]["verdict"] == "better" and miou[name]["verdict"] != "worse"
    ]  # fmt: skip
    spreads = [
        scores[key]["half_range"] for scores in summary.values() for key in ("rare_f1", "miou")
    ]
    if num_seeds < 2:
        return "Only one seed: the seed-to-seed spread is unknown, so no recommendation is made."
    if winners:
        best = max(winners, key=lambda name: summary[name]["rare_f1"]["mean"])
        tied = [
            name for name in winners
            if summary[name]["rare_f1"]["max"] >= summary[best]["rare_f1"]["min"]
        ]  # fmt: skip
        pick = max(tied, key=lambda name: summary[name]["miou"]["mean"])
        listed = ", ".join(f"`{name}` ({rare[name]['difference']:+.3f})" for name in tied)
        return (
            f"Use class weights over the training split. Rare-class F1 beats `{BASELINE}` beyond "
            f"the seed spread (every seed above every baseline seed) for {listed}; their seed "
            f"ranges overlap, so they are tied on the rare classes. Of these, `{pick}` has the "
            f"highest mIoU ({miou[pick]['difference']:+.3f} over the baseline), so it is the "
            "suggested default for rare parts."
        )
    worse = [
        name
        for name in rare
        if rare[name]["verdict"] == "worse" or miou[name]["verdict"] == "worse"
    ]
    text = (
        f"No difference: no variant's rare-class F1 beats `{BASELINE}` beyond the seed-to-seed spread "
        f"(half-ranges up to {max(spreads):.3f}), so keep the default (cross-entropy, no class weights)."
    )
    if worse:
        text += (
            " Worse than the baseline beyond the spread: "
            + ", ".join(f"`{name}`" for name in worse)
            + "."
        )
    return text


def _cell(stats, digits=3):
    return f"{stats['mean']:.{digits}f} ± {stats['half_range']:.{digits}f}"


def markdown_report(summary, budget, seeds, split_sizes, recommendation, wall_seconds):
    rare_f1, miou = compare(summary, "rare_f1"), compare(summary, "miou")
    lines = [
        "# Class imbalance: weighting schemes and losses",
        "",
        "## Synthetic faces (the first study)",
        "",
        "Generated by `python -m experiments.imbalance` (raw runs: `imbalance_results.json`). "
        "Do not edit the numbers by hand; rerun the study.",
        "",
        f"Setup: synthetic faces (`make_demo_dataset`, {budget['demo_images']} images: "
        + ", ".join(f"{count} {split}" for split, count in split_sizes.items())
        + f"), the demo model (MobileNetV2 alpha {MODEL['alpha']}, "
        f"{MODEL['aspp_filters']} filters, from scratch), image size {budget['image_size']}, "
        f"batch {budget['batch_size']}, {budget['epochs']} epochs for every variant, seeds "
        f"{', '.join(map(str, seeds))}. Each run's `best.keras` (best val mIoU on "
        f"{budget['max_val_images']} val images) is scored on the test split at "
        f"{budget['label_size']}x{budget['label_size']} label resolution. Study wall time "
        f"(first run's start to last run's end, all processes): {wall_seconds / 60:.1f} min.",
        "",
        "Cells are the mean over seeds ± half the seed-to-seed range. Rare F1 is the mean F1 of "
        f"{', '.join(RARE_CLASSES)}. Training seconds are the sum of `metrics.csv`'s epoch times "
        "(2 shared CPU cores; other jobs ran alongside, so treat them as rough).",
        "",
        "### F1 of the rare classes, mIoU, mean F1",
        "",
        "| variant | "
        + " | ".join(f"{name} F1" for name in RARE_CLASSES)
        + " | rare F1 | mIoU | mean F1 | train s |",
        "|---" * (len(RARE_CLASSES) + 5) + "|",
    ]
    for name, scores in summary.items():
        cells = [_cell(scores[f"{class_name}/f1"]) for class_name in RARE_CLASSES]
        cells += [_cell(scores[key]) for key in ("rare_f1", "miou", "mean_f1")]
        cells.append(_cell(scores["train_seconds"], 0))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "### IoU of the rare classes",
        "",
        "| variant | " + " | ".join(f"{name} IoU" for name in RARE_CLASSES) + " |",
        "|---" * (len(RARE_CLASSES) + 1) + "|",
    ]
    for name, scores in summary.items():
        lines.append(
            f"| {name} | " + " | ".join(_cell(scores[f"{c}/iou"]) for c in RARE_CLASSES) + " |"
        )
    lines += [
        "",
        f"### Against the baseline `{BASELINE}`",
        "",
        "A difference counts only when the seed ranges do not overlap (every seed of one variant "
        "above every seed of the other).",
        "",
        "| variant | rare F1 diff | verdict | mIoU diff | verdict |",
        "|---|---|---|---|---|",
    ]
    for name in rare_f1:
        lines.append(
            f"| {name} | {rare_f1[name]['difference']:+.3f} | {rare_f1[name]['verdict']} "
            f"| {miou[name]['difference']:+.3f} | {miou[name]['verdict']} |"
        )
    spreads = {
        key: [scores[key]["half_range"] for scores in summary.values()]
        for key in ("rare_f1", "miou")
    }
    lines += [
        "",
        "### Seed-to-seed spread",
        "",
        f"Half-range over seeds, across variants: rare F1 median {np.median(spreads['rare_f1']):.3f} "
        f"(max {max(spreads['rare_f1']):.3f}), mIoU median {np.median(spreads['miou']):.3f} "
        f"(max {max(spreads['miou']):.3f}).",
        "",
        "### Recommendation",
        "",
        recommendation,
        "",
        f"Caveat: every run is short ({budget['epochs']} epochs at {budget['image_size']} px; "
        f"baseline mIoU {summary[BASELINE]['miou']['mean']:.2f}), so this ranks the variants "
        "early in training on synthetic faces; it does not show which is best after a full "
        "schedule on CelebAMask-HQ.",
        "",
        "![Rare-class F1 per variant](imbalance.png)",
        "",
    ]
    return "\n".join(lines)


# The real-face section of imbalance.md is written by `experiments.real_faces`; this study
# rewrites the page and keeps that section as it found it.
REAL_FACES_BEGIN = "<!-- real faces: written by python -m experiments.real_faces imbalance -->"
REAL_FACES_END = "<!-- end of the real-face section -->"


def real_faces_section(page_text):
    """The real-face section `page_text` holds, markers excluded ("" if none)."""
    if REAL_FACES_BEGIN not in page_text:
        return ""
    return page_text.split(REAL_FACES_BEGIN, 1)[1].split(REAL_FACES_END, 1)[0].strip("\n")


def with_real_faces_section(page_text, section):
    """`page_text` with `section` right after its title line, in place of any earlier one."""
    if REAL_FACES_BEGIN in page_text:
        before, rest = page_text.split(REAL_FACES_BEGIN, 1)
        page_text = before.rstrip("\n") + "\n\n" + rest.split(REAL_FACES_END, 1)[1].lstrip("\n")
    title, _, body = page_text.partition("\n")
    block = f"{REAL_FACES_BEGIN}\n{section}\n{REAL_FACES_END}"
    return f"{title}\n\n{block}\n\n{body.lstrip()}"


def plot(summary, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(summary)
    positions = np.arange(len(names))
    width = 0.8 / len(RARE_CLASSES)
    figure, axis = plt.subplots(figsize=(max(8, 1.3 * len(names)), 4.5))
    for index, class_name in enumerate(RARE_CLASSES):
        stats = [summary[name][f"{class_name}/f1"] for name in names]
        axis.bar(
            positions + (index - (len(RARE_CLASSES) - 1) / 2) * width,
            [s["mean"] for s in stats], width, yerr=[s["half_range"] for s in stats],
            capsize=2, label=class_name,
        )  # fmt: skip
    axis.set_xticks(positions, names, rotation=25, ha="right")
    axis.set(
        ylabel="test F1 (mean ± half-range over seeds)",
        ylim=(0, 1),
        title="Rare-class F1 per variant",
    )
    axis.legend(ncol=len(RARE_CLASSES), loc="upper right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv=None):
    args = parse_args(argv)
    from faceparsing.files import atomic_write_text

    started = time.monotonic()
    budget = QUICK_BUDGET if args.quick else STUDY_BUDGET
    model = QUICK_MODEL if args.quick else MODEL
    labels = label_loader(args.data_root, budget["label_size"])
    results = [
        run_one(name, seed, budget, model, args.data_root, args.runs, labels)
        for seed in args.seeds
        for name in budget["variants"]
    ]
    from faceparsing.data.layout import split_ids

    split_sizes = {
        split: len(split_ids(args.data_root, split)) for split in ("train", "val", "test")
    }
    summary = summarise(results, budget["variants"])
    recommendation = recommend(summary, len(args.seeds))
    run_dirs = [
        run_config(run["variant"], run["seed"], budget, model, args.data_root, args.runs).run_dir
        for run in results
    ]
    wall_seconds = study_wall_seconds(run_dirs)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    record = {
        "budget": budget, "model": model, "seeds": args.seeds, "split_sizes": split_sizes, "rare_classes": list(RARE_CLASSES),
        "baseline": BASELINE, "wall_seconds": wall_seconds, "recommendation": recommendation,
        "summary": summary, "runs": results,
    }  # fmt: skip
    atomic_write_text(out / "imbalance_results.json", json.dumps(record, indent=2))
    page = out / "imbalance.md"
    report = markdown_report(summary, budget, args.seeds, split_sizes, recommendation, wall_seconds)
    real_faces = real_faces_section(page.read_text()) if page.exists() else ""
    atomic_write_text(page, with_real_faces_section(report, real_faces) if real_faces else report)
    plot(summary, out / "imbalance.png")
    print(recommendation)
    print(
        f"Wrote {out / 'imbalance.md'} (study wall time {wall_seconds / 60:.1f} min, "
        f"this call {(time.monotonic() - started) / 60:.1f} min)."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
