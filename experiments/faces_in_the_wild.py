"""Faces in the wild: dataset faces shrunk, rotated and pasted into larger scenes.

Usage:
    python -m experiments.faces_in_the_wild --checkpoint runs/demo/best.keras \\
        --data_root data/demo --landmarks synthetic [--scenes 40] [--out runs/faces_in_the_wild]
    python -m experiments.faces_in_the_wild --checkpoint RUN/best.keras \\
        --data_root data/CelebAMask-HQ --landmarks mtcnn

Each scene is a textured 1024x768 picture holding one or two aligned faces of
the split (the whole square frame, shrunk to 25-50% of the scene's height and
turned by up to 30 degrees), with its ground truth moved the same way. The
scenes go through `visualize.py --save_masks` twice, aligned (the default) and
`--align none` (the whole-photo letterbox), and the masks are scored against
the moved truth (19-class mIoU and mean F1 pooled over all scenes). The
reference is the model on the aligned originals themselves, as `evaluate.py`
predicts them. The report gives each score as a fraction of that reference.

`--landmarks mtcnn` lets visualize.py's detector find the faces: that is the
check for real CelebA-HQ faces, which are CelebA-HQ squares already. The
synthetic faces are not cut that way and the detector misses most of them, so
`--landmarks synthetic` first cuts each synthetic face as CelebA-HQ would have
(its CelebA-HQ square from the generator's own landmarks) and hands the moved
landmarks to visualize.py with `--landmarks`.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from faceparsing import drawing
from faceparsing.classes import NUM_CLASSES, PART_NAMES
from faceparsing.data.layout import split_ids
from faceparsing.data.release import MASK_SIZE, ReleaseLayout, merge_masks
from faceparsing.files import atomic_write_text
from faceparsing.images import resize_bilinear, save_png
from faceparsing.inference import alignment
from faceparsing.metrics import confusion_matrix, scores_from_confusion

REPO = Path(__file__).resolve().parents[1]
SCENE_SIZE = (768, 1024)  # height, width
FACE_SIDE = {1: (0.25, 0.5), 2: (0.25, 0.42)}  # frame side / scene height, per faces in scene
MAX_ANGLE = 30.0
# The synthetic generator's nose tip (its nostrils) in face units; see drawing._paint_details.
SYNTHETIC_NOSE_Y = 45.0
EYE_IDS = {PART_NAMES.index("l_eye") + 1, PART_NAMES.index("r_eye") + 1}


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data_root", required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--landmarks", choices=("mtcnn", "synthetic"), default="mtcnn")
    parser.add_argument("--scenes", type=int, default=40, help="scenes, half with two faces")
    parser.add_argument("--originals", type=int, default=100, help="split images to draw from")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image_size", type=int, help="model input size (default: the run's)")
    parser.add_argument("--synthetic_seed", type=int, default=0, help="seed the set was drawn with")
    parser.add_argument("--out", default="runs/faces_in_the_wild")
    return parser.parse_args(argv)


# ---------------------------------------------------------------------------
# The aligned originals
# ---------------------------------------------------------------------------


def synthetic_landmarks(seed, image_id):
    """The five landmarks of synthetic face `image_id` at mask resolution (512), from the
    same draws `drawing.draw_sample` makes."""
    rng = np.random.default_rng((seed, image_id))
    face, pose = drawing.random_face(rng), drawing.random_pose(rng)
    eye_x, eye_y = face["eye_x"], face["eye_y"]
    mouth_x, mouth_y = face["mouth_width"], face["mouth_y"]
    points = [[-eye_x, eye_y], [eye_x, eye_y], [0, SYNTHETIC_NOSE_Y], [-mouth_x, mouth_y],
              [mouth_x, mouth_y]]  # fmt: skip
    return drawing.to_canvas(np.array(points, dtype=float), pose)


def load_originals(root, image_ids, landmarks_mode, synthetic_seed):
    """(images (N, 512, 512, 3), labels (N, 512, 512), landmarks (N, 5, 2) or None)."""
    images, labels, points = [], [], []
    for image_id in image_ids:
        image, label = (
            ReleaseLayout(root).load_image(image_id, MASK_SIZE),
            merge_masks(root, image_id),
        )
        if landmarks_mode == "synthetic":
            face = synthetic_landmarks(synthetic_seed, image_id)
            matrix = alignment.crop_to_photo_matrix(face, MASK_SIZE)
            image = alignment.warp_to_crop(image, matrix, MASK_SIZE)
            label = alignment.warp_label_to_crop(label, matrix, MASK_SIZE)
            points.append(alignment.apply_affine(alignment.invert_affine(matrix), face + 0.5) - 0.5)
        images.append(image)
        labels.append(label)
    landmarks = np.stack(points) if points else None
    if landmarks is not None:
        check_synthetic_landmarks(labels, landmarks)
    return np.stack(images), np.stack(labels), landmarks


def check_synthetic_landmarks(labels, landmarks):
    """The generator's eye points must fall on eyes, or the generator changed its draws."""
    on_eyes = [
        label[int(round(y)), int(round(x))] in EYE_IDS
        for label, face in zip(labels, landmarks, strict=True)
        for x, y in face[:2]
    ]
    if np.mean(on_eyes) < 0.9:
        raise RuntimeError(f"only {np.mean(on_eyes):.0%} of the synthetic eye landmarks hit an eye")


def predict_originals(model, images, size):
    from faceparsing.inference.predict import predict_labels

    batch = np.stack([resize_bilinear(image, (size, size)) for image in images])
    return np.concatenate(
        [
            predict_labels(model, batch[i : i + 8], (MASK_SIZE, MASK_SIZE))
            for i in range(0, len(batch), 8)
        ]
    )


# ---------------------------------------------------------------------------
# Scenes
# ---------------------------------------------------------------------------


def scene_background(rng):
    """A textured wall: coloured low-frequency blotches, a gradient and grain."""
    height, width = SCENE_SIZE
    coarse = rng.uniform(0, 255, (6, 8, 3)).astype(np.uint8)
    blotches = np.asarray(
        Image.fromarray(coarse).resize((width, height), Image.BICUBIC), np.float32
    )
    gradient = np.linspace(0.75, 1.15, width, dtype=np.float32)[None, :, None]
    grain = rng.normal(0, 6, (height, width, 3)).astype(np.float32)
    return np.clip(blotches * gradient + grain, 0, 255).astype(np.uint8)


def place_frames(rng, num_faces):
    """Frame-to-scene similarity matrices (2, 3) for `num_faces` frames that neither
    overlap nor leave the scene."""
    height, width = SCENE_SIZE
    while True:
        placed = []
        for _ in range(num_faces):
            side = rng.uniform(*FACE_SIDE[num_faces]) * height
            radius = side / np.sqrt(2)  # the turned square stays within this circle
            centre = rng.uniform([radius, radius], [width - radius, height - radius])
            placed.append((centre, side, rng.uniform(-MAX_ANGLE, MAX_ANGLE)))
        if all(
            np.hypot(*(a[0] - b[0])) > (a[1] + b[1]) / np.sqrt(2)
            for i, a in enumerate(placed)
            for b in placed[i + 1 :]
        ):
            return [frame_matrix(*frame) for frame in placed]


def frame_matrix(centre, side, angle_degrees):
    angle = np.deg2rad(angle_degrees)
    scale = side / MASK_SIZE
    linear = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    offset = centre - linear @ np.full(2, MASK_SIZE / 2)
    return np.concatenate([linear, offset[:, None]], axis=1)


def paste(scene, truth, image, label, matrix):
    """Paste a frame (bilinear) and its label (nearest) into the scene through `matrix`."""
    values = image.astype(np.float32)
    for (top, bottom, left, right), sampled, inside in alignment.warp_from_crop(
        values, matrix, scene.shape
    ):
        window = np.s_[top:bottom, left:right]
        scene[window] = np.where(inside[..., None], np.round(sampled), scene[window])
    inverse = alignment.invert_affine(matrix)
    top, bottom, left, right = alignment.photo_window(matrix, MASK_SIZE, scene.shape)
    grid_x, grid_y = np.meshgrid(np.arange(left, right) + 0.5, np.arange(top, bottom) + 0.5)
    u = inverse[0, 0] * grid_x + inverse[0, 1] * grid_y + inverse[0, 2]
    v = inverse[1, 0] * grid_x + inverse[1, 1] * grid_y + inverse[1, 2]
    inside = (u >= 0) & (u < MASK_SIZE) & (v >= 0) & (v < MASK_SIZE)
    rows = np.clip(v.astype(int), 0, MASK_SIZE - 1)
    columns = np.clip(u.astype(int), 0, MASK_SIZE - 1)
    window = np.s_[top:bottom, left:right]
    truth[window] = np.where(inside, label[rows, columns], truth[window])


def make_scenes(originals, num_scenes, seed, out_dir):
    """Write scene PNGs and their moved truth; return [(name, face indices, matrices)]."""
    images, labels, _ = originals
    rng = np.random.default_rng(seed)
    scenes = []
    for index in range(num_scenes):
        num_faces = 1 + index % 2
        chosen = rng.choice(len(images), size=num_faces, replace=False).tolist()
        matrices = place_frames(rng, num_faces)
        scene = scene_background(rng)
        truth = np.zeros(SCENE_SIZE, np.uint8)
        for face, matrix in zip(chosen, matrices, strict=True):
            paste(scene, truth, images[face], labels[face], matrix)
        name = f"scene{index:03d}_{num_faces}face"
        save_png(scene, out_dir / "scenes" / f"{name}.png")
        save_png(truth, out_dir / "truth" / f"{name}.png")
        scenes.append((name, chosen, matrices))
    return scenes


def scene_landmarks(scenes, landmarks):
    """{scene file name: moved landmarks of its faces} for visualize.py --landmarks."""
    return {
        f"{name}.png": [
            (alignment.apply_affine(matrix, landmarks[face] + 0.5) - 0.5).tolist()
            for face, matrix in zip(chosen, matrices, strict=True)
        ]
        for name, chosen, matrices in scenes
    }


# ---------------------------------------------------------------------------
# Scoring
# ---------------------------------------------------------------------------


def score(pairs):
    """mIoU (19 classes) and mean F1 (18 parts) of (truth, prediction) pairs, pooled."""
    confusion = np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)
    for truth, prediction in pairs:
        confusion += confusion_matrix(truth, prediction)
    scores = scores_from_confusion(confusion)
    return {"miou": float(scores["miou"]), "mean_f1": float(scores["mean_f1"])}


def score_scenes(out_dir, masks_dir, scenes, num_faces=None):
    pairs = [
        (read_png(out_dir / "truth" / f"{name}.png"), read_png(masks_dir / f"{name}_mask.png"))
        for name, chosen, _ in scenes
        if num_faces is None or len(chosen) == num_faces
    ]
    return score(pairs)


def read_png(path):
    return np.asarray(Image.open(path))


def run_visualize(checkpoint, out_dir, masks_name, extra):
    """Run `visualize.py --save_masks` on the scenes, as a user would."""
    command = [sys.executable, str(REPO / "visualize.py"), f"--checkpoint={checkpoint}",
               f"--images={out_dir / 'scenes'}", f"--out={out_dir / masks_name}", "--save_masks",
               "--json", *extra]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-2000:]}")
    return out_dir / masks_name


def detected_faces(masks_dir, scenes):
    found = [len(json.loads((masks_dir / f"{n}.json").read_text())["faces"]) for n, _, _ in scenes]
    return {"faces_found": int(sum(found)), "faces_pasted": int(sum(len(c) for _, c, _ in scenes))}


def ratio(score, reference):
    return score / reference if reference > 0 else None


def main(argv=None):
    from faceparsing.checkpoints import load_checkpoint, run_config

    args = parse_args(argv)
    out_dir = Path(args.out)
    size = args.image_size or run_config(args.checkpoint).image_size
    image_ids = split_ids(args.data_root, args.split)
    rng = np.random.default_rng(args.seed)
    chosen = rng.choice(image_ids, min(args.originals, len(image_ids)), replace=False)
    image_ids = sorted(int(image_id) for image_id in chosen)
    originals = load_originals(args.data_root, image_ids, args.landmarks, args.synthetic_seed)
    model = load_checkpoint(args.checkpoint)
    reference = score(zip(originals[1], predict_originals(model, originals[0], size), strict=True))
    scenes = make_scenes(originals, args.scenes, args.seed, out_dir)
    extra = [f"--image_size={size}"]
    if args.landmarks == "synthetic":
        table = out_dir / "scene_landmarks.json"
        atomic_write_text(table, json.dumps(scene_landmarks(scenes, originals[2])))
        extra.append(f"--landmarks={table}")
    aligned = run_visualize(args.checkpoint, out_dir, "aligned", extra)
    letterbox = run_visualize(args.checkpoint, out_dir, "letterbox", [*extra, "--align=none"])
    report = {
        "checkpoint": str(args.checkpoint), "data_root": str(args.data_root), "split": args.split,
        "landmarks": args.landmarks, "originals": len(image_ids), "scenes": len(scenes),
        "aligned_originals": reference, **detected_faces(aligned, scenes),
    }  # fmt: skip
    for method, masks_dir in (("aligned", aligned), ("letterbox", letterbox)):
        for label, num_faces in (("all", None), ("1face", 1), ("2faces", 2)):
            scores = score_scenes(out_dir, masks_dir, scenes, num_faces)
            scores.update(
                {f"{k}_ratio": ratio(scores[k], reference[k]) for k in ("miou", "mean_f1")}
            )
            report[f"{method}_{label}"] = scores
    atomic_write_text(out_dir / "report.json", json.dumps(report, indent=1) + "\n")
    print_report(report)
    return 0


def print_report(report):
    reference = report["aligned_originals"]
    print(f"aligned originals ({report['originals']} images): mIoU {reference['miou']:.4f}, "
          f"mean F1 {reference['mean_f1']:.4f}")  # fmt: skip
    print(f"faces found in the scenes: {report['faces_found']} of {report['faces_pasted']}")
    for key, scores in report.items():
        if key.startswith(("aligned_", "letterbox_")) and key != "aligned_originals":
            print(f"{key:18s} mIoU {scores['miou']:.4f} ({percent(scores['miou_ratio'])} of "
                  f"originals), mean F1 {scores['mean_f1']:.4f} ({percent(scores['mean_f1_ratio'])})")  # fmt: skip


def percent(value):
    return "n/a" if value is None else f"{value:.1%}"


if __name__ == "__main__":
    sys.exit(main())
