"""Drawing parsed faces: colour overlays, legends, dataset panels and grids.

Colours and legend names come from a `ClassSet` (CelebAMask-HQ's by default).
"""

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from faceparsing.classes import CELEBAMASK_HQ


def blend(image, label, alpha, class_set=CELEBAMASK_HQ):
    colours = class_set.colorize(label).astype(np.float32)
    mixed = np.where(label[..., None] > 0, (1 - alpha) * image + alpha * colours, image)
    return mixed.astype(np.uint8)


def legend(labels, height, class_set=CELEBAMASK_HQ):
    """A column listing the classes present in any of `labels`, with their colours."""
    present = sorted(set(np.unique(np.concatenate([np.unique(label) for label in labels]))))
    font = ImageFont.load_default(size=max(10, height // 40))
    row = max(14, height // 30)
    panel = Image.new(
        "RGB", (max(150, height // 4), max(height, row * (len(present) + 1))), "white"
    )
    draw = ImageDraw.Draw(panel)
    for index, class_id in enumerate(present):
        y = 4 + index * row
        draw.rectangle(
            (4, y, 4 + row - 4, y + row - 4),
            fill=tuple(int(c) for c in class_set.palette[class_id]),
            outline="black",
        )
        draw.text((row + 6, y), class_set.display(class_id), fill="black", font=font)
    return np.asarray(panel)[:height] if panel.height >= height else np.asarray(panel)


def side_by_side(tiles, labels, class_set=CELEBAMASK_HQ):
    height = tiles[0].shape[0]
    key = legend(labels, height, class_set)
    padded_key = np.full((height, key.shape[1], 3), 255, dtype=np.uint8)
    padded_key[: key.shape[0]] = key[:height]
    return np.concatenate(tiles + [padded_key], axis=1)


def error_map(truth, prediction, class_set=CELEBAMASK_HQ):
    """White where prediction and truth agree, the predicted colour where they differ."""
    errors = np.full(truth.shape + (3,), 255, dtype=np.uint8)
    wrong = truth != prediction
    errors[wrong] = class_set.palette[prediction[wrong]]
    return errors


def dataset_panel(photo, truth, prediction, class_set=CELEBAMASK_HQ):
    """photo | ground truth | prediction | errors, with a legend of the classes shown."""
    tiles = [
        photo, class_set.colorize(truth), class_set.colorize(prediction),
        error_map(truth, prediction, class_set),
    ]  # fmt: skip
    return side_by_side(tiles, [truth, prediction], class_set)


def photo_panel(photo, label, alpha, class_set=CELEBAMASK_HQ):
    """photo | label colours | overlay, with a legend of the classes found."""
    tiles = [photo, class_set.colorize(label), blend(photo, label, alpha, class_set)]
    return side_by_side(tiles, [label], class_set)


def stack_panels(panels, max_size=(2048, 8192)):
    """Panels one under another on white, shrunk to fit `max_size` (width, height)."""
    grid_width = max(panel.shape[1] for panel in panels)
    grid = np.full((sum(p.shape[0] for p in panels), grid_width, 3), 255, dtype=np.uint8)
    top = 0
    for panel in panels:
        grid[top : top + panel.shape[0], : panel.shape[1]] = panel
        top += panel.shape[0]
    thumbnail = Image.fromarray(grid)
    thumbnail.thumbnail(max_size)
    return np.asarray(thumbnail)


def mark_faces(image, boxes):
    """A copy of `image` with each box (left, top, right, bottom) outlined and numbered."""
    picture = Image.fromarray(np.asarray(image, dtype=np.uint8))
    draw = ImageDraw.Draw(picture)
    width = max(1, min(picture.size) // 200)
    font = ImageFont.load_default(size=max(10, min(picture.size) // 30))
    for index, (left, top, right, bottom) in enumerate(boxes):
        for offset, colour in ((width, "black"), (0, "white")):  # white on a dark rim
            draw.rectangle(
                (left - offset, top - offset, right + offset, bottom + offset),
                outline=colour,
                width=width,
            )
        draw.text((left + 2 * width, top + 2 * width), str(index), fill="white", font=font)
    return np.asarray(picture)


def overlay_frame(image, label, alpha, boxes=(), class_set=CELEBAMASK_HQ):
    """The photo with the label colours blended in and each face's box marked."""
    return mark_faces(blend(image, label, alpha, class_set), boxes)


def faces_panel(photo, label, alpha, boxes=(), class_set=CELEBAMASK_HQ):
    """photo | label colours | overlay with each face's box, with a legend of the classes."""
    tiles = [
        photo, class_set.colorize(label), overlay_frame(photo, label, alpha, boxes, class_set),
    ]  # fmt: skip
    return side_by_side(tiles, [label], class_set)
