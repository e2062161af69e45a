"""Draw face-parsing overlays on your photos or on dataset samples.

Usage:
    python visualize.py --checkpoint runs/demo/best.keras --images "photos/*.jpg" --out overlays
    python visualize.py --checkpoint runs/demo/best.keras --video clip.mp4 --out overlays
    python visualize.py --checkpoint runs/demo/best.keras --data_root data/demo --split val --num 8 --out panels
    python visualize.py --checkpoint runs/demo/best.keras --images photo.jpg --classes hair --save_masks --out hair

Every face of a photo (or video frame) is found with its five landmarks, cut
out as CelebA-HQ was (the square the model was trained on), parsed, and its
logits are warped back onto the photo. A photo without a face, or any photo
with `--align none`, is letterboxed whole to the model's input size instead.
Dataset samples are predicted exactly as `evaluate.py` does and compared at
label resolution. Colours, legends and JSON names are the checkpoint's class
set; `--classes hair` (or `hair,skin`, or a YAML map) draws and writes a merged
view instead: the classes named, everything else background.
"""

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

from faceparsing import cli
from faceparsing.checkpoints import load_checkpoint, run_config
from faceparsing.classes import class_set_of, remap
from faceparsing.data.layout import SPLITS, check_release_labels, open_layout
from faceparsing.data.release import MASK_SIZE
from faceparsing.errors import ConfigError, DatasetError, ImageReadError
from faceparsing.files import atomic_write_text
from faceparsing.images import read_rgb, resize_nearest, save_png
from faceparsing.inference import evaluation, overlay, video
from faceparsing.inference.alignment import check_landmarks
from faceparsing.inference.detection import MIN_FACE_SIZE, LandmarkDetector, MTCNNDetector
from faceparsing.inference.faces import ParsedPhoto, parse_faces
from faceparsing.inference.predict import parse_photo, predict_dataset_labels

ALIGN_MODES = ("celebahq", "none")


def parse_args(argv):
    parser = cli.ArgumentParser(description="Overlay face parsing on photos or dataset samples.")
    parser.add_argument("--checkpoint", required=True, help=".keras checkpoint")
    parser.add_argument("--images", help="photo or video file, folder or glob pattern")
    parser.add_argument("--video", help="a video file (any container ffmpeg reads)")
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
    parser.add_argument(
        "--align",
        default="celebahq",
        choices=ALIGN_MODES,
        help="celebahq: detect faces and parse each as CelebA-HQ cut it; none: whole photo",
    )
    parser.add_argument(
        "--crop_scale", type=float, default=1.0, help="crop side relative to CelebA-HQ's square"
    )
    parser.add_argument(
        "--min_face_size", type=int, default=MIN_FACE_SIZE, help="smallest face to detect (px)"
    )
    parser.add_argument("--json", action="store_true", help="also write <stem>.json per photo")
    parser.add_argument(
        "--classes", default="", help="draw a merged view: 'hair' or 'hair,skin' or YAML"
    )
    parser.add_argument(
        "--landmarks",
        help='JSON {"photo.jpg": [5 [x, y] points per face, ...]}: use these faces, no detector',
    )
    args = parser.parse_args(argv)
    if sum(value is not None for value in (args.images, args.video, args.data_root)) != 1:
        parser.error("give exactly one of --images, --video or --data_root")
    if not 0.0 <= args.alpha <= 1.0:
        parser.error(f"--alpha must lie in [0, 1], got {args.alpha}")
    if not args.crop_scale > 0:
        parser.error(f"--crop_scale must be positive, got {args.crop_scale}")
    return args


@dataclasses.dataclass(frozen=True)
class View:
    """The classes drawn: the model's, or a merged view (`table` maps the model's ids)."""

    class_set: object
    table: object = None

    def labels(self, label):
        return label if self.table is None else self.table[label]

    def counts(self, pixel_counts, model_set):
        """{class name: pixels} of the model's classes, summed into this view's classes."""
        if self.table is None:
            return pixel_counts
        merged = {}
        for name, count in pixel_counts.items():
            target = self.class_set.names[self.table[model_set.ids[name]]]
            merged[target] = merged.get(target, 0) + count
        return merged


class PhotoParser:
    """Parses one picture (photo or video frame): faces aligned, or the whole picture.

    `detector` finds faces in every picture; `landmarks` ({file name: faces})
    gives them instead; with neither, the whole picture is letterboxed. Labels
    come out in `view`'s classes (default: the model's).
    """

    def __init__(self, model, size, crop_scale, detector=None, landmarks=None, view=None):
        self.model, self.size, self.crop_scale = model, size, crop_scale
        self.detector, self.landmarks = detector, landmarks
        self.view = view or View(class_set_of(model))

    @property
    def aligns(self):
        return self.detector is not None or self.landmarks is not None

    def __call__(self, image, name):
        detector = self.detector
        if self.landmarks is not None:
            detector = LandmarkDetector(self.landmarks.get(name, []))
        model_set = class_set_of(self.model)
        if detector is None:
            parsed = ParsedPhoto(parse_photo(self.model, image, self.size), [], model_set.names)
        else:
            parsed = parse_faces(self.model, image, self.size, detector, crop_scale=self.crop_scale)
        if self.view.table is None:
            return parsed
        faces = [
            dataclasses.replace(face, pixel_counts=self.view.counts(face.pixel_counts, model_set))
            for face in parsed.faces
        ]
        return ParsedPhoto(self.view.labels(parsed.label), faces, self.view.class_set.names)


def load_landmarks(path):
    """{file name: [(5, 2) landmarks, ...]} from a JSON file; errors name the file and key."""
    try:
        table = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"--landmarks file not found: {path}") from None
    except json.JSONDecodeError as error:
        raise ConfigError(f"--landmarks {path} is not valid JSON: {error}") from None
    if not isinstance(table, dict):
        raise ConfigError(f"--landmarks {path} must hold an object {{file name: faces}}")
    faces = {}
    for name, entries in table.items():
        try:
            faces[name] = [check_landmarks(face) for face in entries]
        except (TypeError, ValueError) as error:
            raise ConfigError(f"--landmarks {path}, key {name!r}: {error}") from None
    return faces


def visualize_photos(parser, paths, out_dir, args):
    """Write `<stem>_overlay.png` (and `<stem>_mask.png`, `<stem>.json`) per photo, and
    the video outputs per video; return the bad files' errors."""
    problems = []
    for path in paths:
        try:
            if args.video is not None or video.is_video(path):
                visualize_video(parser, path, out_dir, args)
            else:
                visualize_photo(parser, path, out_dir, args)
        except (ImageReadError, video.VideoError) as error:
            problems.append(str(error))
    return problems


def visualize_photo(parser, path, out_dir, args):
    image = read_rgb(path)
    parsed = parser(image, path.name)
    if parser.aligns and not parsed.faces:
        print(f"{path}: no face found, parsed the whole photo instead", file=sys.stderr)
    boxes = [face.box for face in parsed.faces]
    save_png(
        overlay.faces_panel(image, parsed.label, args.alpha, boxes, parser.view.class_set),
        out_dir / f"{path.stem}_overlay.png",
    )
    if args.save_masks:
        save_png(parsed.label, out_dir / f"{path.stem}_mask.png")
    if args.json:
        write_json(out_dir / f"{path.stem}.json", photo_record(path, parsed, args))
    print(f"{path}: {len(parsed.faces)} face(s) -> {out_dir / (path.stem + '_overlay.png')}")


def visualize_video(parser, path, out_dir, args):
    def parse_frame(frame):
        parsed = parser(frame, path.name)
        boxes = [face.box for face in parsed.faces]
        record = parsed.to_json() if args.json else {"faces": len(parsed.faces)}
        drawn = overlay.overlay_frame(frame, parsed.label, args.alpha, boxes, parser.view.class_set)
        return parsed.label, drawn, record

    summary = video.process_video(path, out_dir, parse_frame, args.save_masks)
    if parser.aligns:
        empty = sum(not record["faces"] for record in summary["records"])
        if empty:
            print(
                f"{path}: no face found in {empty} of {summary['frames']} frames, "
                "parsed those whole",
                file=sys.stderr,
            )
    if args.json:
        write_json(out_dir / f"{path.stem}.json", {**summary, "align": args.align})
    print(f"{path}: {summary['frames']} frames -> {out_dir / (path.stem + '_overlay.mp4')}")


def photo_record(path, parsed, args):
    return {"photo": str(path), "align": args.align, **parsed.to_json()}


def write_json(path, record):
    atomic_write_text(path, json.dumps(record, indent=1) + "\n")


def visualize_dataset(model, layout, split, num, seed, size, out_dir, views):
    """Panels photo | truth | prediction | errors for `num` samples, plus grid.png.

    `views` is `evaluation.label_views`' (class set, truth table, prediction table);
    panels are drawn at 512x512 (labels resized nearest).
    """
    check_release_labels(layout)
    class_set, truth_table, prediction_table = views
    ids = layout.split_ids(split)
    if not ids:
        raise DatasetError(f"split '{split}' of {layout.root} has no images")
    chosen = sorted(
        np.random.default_rng(seed).choice(ids, size=min(num, len(ids)), replace=False).tolist()
    )
    panels = []
    for image_id in chosen:
        truth = resize_nearest(layout.load_label(image_id), (MASK_SIZE, MASK_SIZE))
        truth = truth if truth_table is None else truth_table[truth]
        prediction = predict_dataset_labels(model, layout, [image_id], size, MASK_SIZE)[0]
        if prediction_table is not None:
            prediction = prediction_table[prediction]
        photo = layout.load_image(image_id, MASK_SIZE)
        panels.append(overlay.dataset_panel(photo, truth, prediction, class_set))
        name = layout.sample_name(image_id)
        save_png(panels[-1], out_dir / f"{name}_panel.png")
        accuracy = float((truth == prediction).mean())
        print(f"image {name}: pixel accuracy {accuracy:.3f} -> {out_dir / f'{name}_panel.png'}")
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


def refuse_landmarks_for_videos(args, paths):
    """--landmarks holds one set of faces per file: it cannot follow faces through a video."""
    videos = [path for path in paths if args.video is not None or video.is_video(path)]
    if args.landmarks and args.align != "none" and videos:
        raise ConfigError(
            f"--landmarks gives the faces of photos, and {videos[0]} is a video (faces move "
            "from frame to frame); drop --landmarks to detect the faces in every frame"
        )


def build_detector(args):
    """The face detector, built before the model so a missing package fails at once."""
    if args.align == "none" or args.data_root is not None or args.landmarks:
        return None
    return MTCNNDetector(min_face_size=args.min_face_size)


def run(args):
    saved = run_config(args.checkpoint)
    size = args.image_size or saved.image_size
    out_dir = Path(args.out)
    if args.data_root is None:
        paths = [Path(args.video)] if args.video else video.list_media(args.images)
        if not paths:
            raise ConfigError(f"--images {args.images!r} matches no file")
        refuse_landmarks_for_videos(args, paths)
    detector = build_detector(args)
    landmarks = load_landmarks(args.landmarks) if args.landmarks and args.align != "none" else None
    model = load_checkpoint(args.checkpoint)
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.data_root is not None:
        layout = open_layout(args.data_root, saved.dataset, saved.classes)
        views = evaluation.label_views(
            layout.class_set, class_set_of(model), saved.class_map, args.classes
        )
        visualize_dataset(model, layout, args.split, args.num, args.seed, size, out_dir, views)
        return 0
    view = View(*remap(class_set_of(model), args.classes, "--classes")) if args.classes else None
    parser = PhotoParser(model, size, args.crop_scale, detector, landmarks, view)
    problems = visualize_photos(parser, paths, out_dir, args)
    return report_problems(problems, len(paths))


def main(argv=None):
    return cli.run_command(run, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
