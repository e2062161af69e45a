"""Procedurally drawn faces: each part a mask layer, the image painted from their merge.

Every part is drawn as its own mask layer, overlapping the way CelebAMask-HQ's
annotations do (skin runs under nose, eyes, brows and mouth; hair covers skin; a hat
covers hair; cloth comes last), so the official merge order matters. The image is then
painted from the merged label map, so image and label always agree. Poses, skin tones,
hair styles, backgrounds and lighting vary; left and right eyes look alike, so only
position tells them apart. Eyeglasses, hats, earrings and necklaces are rare, as in
CelebAMask-HQ. Every part is at least ~20 px thick on the 512x512 canvas (5 px at
128x128), so a small model can learn all 19 classes on a CPU in minutes.

`faceparsing.data.synthetic` writes these faces in a dataset's file layout.
"""

import numpy as np
from PIL import Image, ImageDraw

from faceparsing.classes import PART_NAMES

# The canvas: CelebAMask-HQ's mask size (`faceparsing.data.release.MASK_SIZE`).
SIZE = 512

# Probability that an image shows each rare part (CelebAMask-HQ is similar).
RARE_PART_PROBABILITY = {"eye_g": 0.15, "hat": 0.12, "ear_r": 0.15, "neck_l": 0.12}
MOUTH_OPEN_PROBABILITY = 0.5
BALD_PROBABILITY = 0.05
# Thinnest parts (lips, brows, jewellery) are this thick in face units; faces
# are drawn at scale >= 1.05 (faces fill about half the frame, as in CelebA-HQ),
# so at 512x512 they stay >= 20 px thick.
MIN_THICKNESS = 20


# Geometry: shapes are polygons in face coordinates (origin at the face
# centre, y down), placed on the canvas by one similarity transform (pose).


def ellipse(center_x, center_y, radius_x, radius_y, num_points=48):
    angles = np.linspace(-np.pi / 2, 1.5 * np.pi, num_points, endpoint=False)
    return np.stack(
        [center_x + radius_x * np.cos(angles), center_y + radius_y * np.sin(angles)], axis=1
    )


def band(xs, top_ys, thickness):
    """A thick curve: the top edge left to right, then the bottom edge back."""
    top = np.stack([xs, top_ys], axis=1)
    bottom = np.stack([xs[::-1], top_ys[::-1] + thickness], axis=1)
    return np.concatenate([top, bottom])


def below_line(points, line_y):
    """The part of a convex polygon below the horizontal line y = line_y."""
    return points[points[:, 1] > line_y]


def mirror(points):
    return points * np.array([-1, 1])


def random_pose(rng):
    return {
        "center": np.array([256 + rng.uniform(-30, 30), 235 + rng.uniform(-20, 20)]),
        "scale": rng.uniform(1.05, 1.25),
        "angle": np.deg2rad(rng.uniform(-12, 12)),
    }


def to_canvas(points, pose):
    cos, sin = np.cos(pose["angle"]), np.sin(pose["angle"])
    rotation = np.array([[cos, -sin], [sin, cos]])
    return points @ rotation.T * pose["scale"] + pose["center"]


def rasterize(pose, polygons, erase=()):
    """Fill `polygons`, then clear `erase`, on a 512x512 boolean layer."""
    layer = Image.new("L", (SIZE, SIZE), 0)
    draw = ImageDraw.Draw(layer)
    for polygon, fill in [(p, 255) for p in polygons] + [(p, 0) for p in erase]:
        if len(polygon) >= 3:
            draw.polygon([tuple(point) for point in to_canvas(polygon, pose)], fill=fill)
    return np.asarray(layer) > 0


# Face layout: one dict of polygons per part


def random_face(rng):
    """Draw the shape parameters of one face (face units, before the pose)."""
    face = {
        "radius_x": rng.uniform(95, 112),
        "radius_y": rng.uniform(125, 142),
        "eye_x": rng.uniform(38, 46),
        "eye_y": rng.uniform(-28, -18),
        "mouth_y": rng.uniform(74, 82),
        "mouth_width": rng.uniform(30, 40),
        "mouth_open": rng.random() < MOUTH_OPEN_PROBABILITY,
        "hair_style": rng.choice(["short", "medium", "long"]),
        "bald": rng.random() < BALD_PROBABILITY,
        "fringe_y": rng.uniform(-105, -82),
        "neck_width": rng.uniform(46, 58),
    }
    face.update({part: rng.random() < p for part, p in RARE_PART_PROBABILITY.items()})
    return face


def part_polygons(face, rng):
    """Return `{part: (polygons, erase_polygons)}` for every part drawn on this face."""
    skin = ellipse(0, 0, face["radius_x"], face["radius_y"], 72)
    parts = {"skin": ([skin], [])}
    parts.update(_eye_region_parts(face, rng))
    parts.update(_mouth_parts(face))
    parts.update(_hair_and_hat_parts(face, skin, rng))
    parts.update(_body_parts(face, skin, rng))
    return parts


def _eye_region_parts(face, rng):
    eye_x, eye_y = face["eye_x"], face["eye_y"]
    eye = ellipse(-eye_x, eye_y, 22, 13)
    brow_xs = np.linspace(-eye_x - 30, -eye_x + 28, 12)
    arch = rng.uniform(3, 9)
    brow_top = eye_y - 40 - arch * (1 - ((brow_xs + eye_x) / 30) ** 2)
    brow = band(brow_xs, brow_top, MIN_THICKNESS)
    nose = np.array([[-9, eye_y + 8], [9, eye_y + 8], [20, 38], [15, 50], [-15, 50], [-20, 38]])
    ear = ellipse(-face["radius_x"] - 6, 5, 21, 36)
    parts = {
        "nose": ([nose], []),
        "l_eye": ([eye], []),
        "r_eye": ([mirror(eye)], []),
        "l_brow": ([brow], []),
        "r_brow": ([mirror(brow)], []),
        "l_ear": ([ear], []),
        "r_ear": ([mirror(ear)], []),
    }
    if face["eye_g"]:
        lens = ellipse(-eye_x, eye_y, 36, 25)
        bridge = band(np.array([-eye_x + 30, eye_x - 30]), np.array([eye_y - 12] * 2), 16)
        parts["eye_g"] = ([lens, mirror(lens), bridge], [])
    if face["ear_r"]:
        earring = ellipse(-face["radius_x"] - 8, 54, 20, 20, 24)
        sides = [earring, mirror(earring)][: 1 + (rng.random() < 0.7)]
        parts["ear_r"] = (sides, [])
    return parts


def _mouth_parts(face):
    mouth_y, width = face["mouth_y"], face["mouth_width"]
    gap = 22 if face["mouth_open"] else 0
    xs = np.linspace(-width, width, 15)
    curve = (xs / width) ** 2
    upper_top = mouth_y - gap / 2 - MIN_THICKNESS + 6 * curve + 3 * np.exp(-((xs / 6) ** 2))
    upper = band(xs, upper_top, MIN_THICKNESS - 6 * curve)
    lower = band(xs, np.full_like(xs, mouth_y + gap / 2), MIN_THICKNESS + 4 - 10 * curve)
    parts = {"u_lip": ([upper], []), "l_lip": ([lower], [])}
    if face["mouth_open"]:
        # The mouth mask runs under the lips, which overwrite it when merged.
        parts["mouth"] = ([ellipse(0, mouth_y, width - 2, gap / 2 + 14)], [])
    return parts


def _hair_and_hat_parts(face, skin, rng):
    parts = {}
    radius_x, radius_y = face["radius_x"], face["radius_y"]
    if not face["bald"]:
        outer = ellipse(0, -12, radius_x + rng.uniform(14, 32), radius_y + rng.uniform(18, 36), 72)
        side_end = {"short": -10, "medium": 60, "long": 230}[face["hair_style"]]
        polygons = [outer[outer[:, 1] <= side_end]]
        if face["hair_style"] == "long":
            width = rng.uniform(28, 45)
            strip = np.array([[-radius_x + 4, 0], [-radius_x - width, 0]])
            strip = np.concatenate(
                [strip, [[-radius_x - width, side_end], [-radius_x + 4, side_end]]]
            )
            polygons += [strip, mirror(strip)]
        # The face below the fringe stays skin (hair would overwrite it).
        parts["hair"] = (polygons, [below_line(skin, face["fringe_y"])])
    if face["hat"]:
        base = face["fringe_y"] - rng.uniform(5, 20)
        dome = ellipse(0, base, radius_x + 18, rng.uniform(60, 85), 48)
        dome = dome[dome[:, 1] <= base]
        brim = band(np.array([-radius_x - 45, radius_x + 45]), np.array([base - 12] * 2), 22)
        parts["hat"] = ([dome, brim], [])
    return parts


def _body_parts(face, skin, rng):
    width, chin = face["neck_width"], face["radius_y"]
    neck = np.array([[-width, chin - 50], [width, chin - 50], [width + 8, 420], [-width - 8, 420]])
    collar_y = chin + rng.uniform(55, 80)
    necklace_xs = np.linspace(-width, width, 15)
    necklace = band(
        necklace_xs, chin + 12 + 20 * (1 - (necklace_xs / width) ** 2), MIN_THICKNESS + 8
    )
    cloth = np.array(
        [
            [-320, 620], [-320, collar_y + 60], [-width - 70, collar_y + 5], [-width, collar_y - 15],
            [0, collar_y + rng.uniform(0, 35)], [width, collar_y - 15],
            [width + 70, collar_y + 5], [320, collar_y + 60], [320, 620],
        ]
    )  # fmt: skip
    parts = {"cloth": ([cloth], [])}
    # Neck comes after the necklace in the merge order, so the neck mask leaves
    # the necklace out; it also stops at the jaw, where skin takes over.
    neck_erase = [skin]
    if face["neck_l"]:
        parts["neck_l"] = ([necklace], [])
        neck_erase.append(necklace)
    parts["neck"] = ([neck], neck_erase)
    return parts


def draw_masks(face, pose, rng):
    """Return `{part: bool (512, 512)}` for the parts with pixels, in merge order."""
    polygons = part_polygons(face, rng)
    masks = {}
    for part in PART_NAMES:
        if part in polygons:
            layer = rasterize(pose, *polygons[part])
            if layer.any():
                masks[part] = layer
    return masks


def merge(masks):
    label = np.zeros((SIZE, SIZE), dtype=np.uint8)
    for class_id, part in enumerate(PART_NAMES, start=1):
        if part in masks:
            label[masks[part]] = class_id
    return label


# Painting the image from the merged label map

HAIR_COLORS = np.array(
    [(25, 20, 18), (60, 40, 28), (105, 70, 40), (200, 170, 110), (150, 65, 30), (160, 160, 160)]
)
METAL_COLORS = np.array([(212, 175, 55), (192, 192, 200), (240, 234, 214), (180, 110, 60)])


def random_palette(rng):
    """Per-image colour of every class; classes share colour ranges on purpose."""

    def jitter(color, amount=15):
        return np.clip(np.asarray(color, float) + rng.uniform(-amount, amount, 3), 0, 255)

    tone = rng.uniform()
    skin = (1 - tone) * np.array([250, 220, 190]) + tone * np.array([95, 60, 40])
    hair = jitter(HAIR_COLORS[rng.integers(len(HAIR_COLORS))])
    lips = jitter((rng.uniform(150, 215), rng.uniform(60, 105), rng.uniform(70, 115)))
    colors = {
        "background": rng.uniform(0, 255, 3),
        "skin": jitter(skin, 8),
        "nose": skin * 0.9,
        "eye_g": rng.uniform(0, 120, 3),
        "l_eye": jitter((232, 232, 226), 8),
        "l_brow": hair * 0.7,
        "l_ear": skin * 0.93,
        "mouth": jitter((70, 25, 30)),
        "u_lip": lips * 0.9,
        "l_lip": lips,
        "hair": hair,
        "hat": rng.uniform(0, 255, 3),
        "ear_r": jitter(METAL_COLORS[rng.integers(len(METAL_COLORS))]),
        "neck_l": jitter(METAL_COLORS[rng.integers(len(METAL_COLORS))]),
        "neck": skin * 0.82,
        "cloth": rng.uniform(0, 255, 3),
    }
    # Left and right parts look alike: only their position tells them apart.
    for left, right in (("l_eye", "r_eye"), ("l_brow", "r_brow"), ("l_ear", "r_ear")):
        colors[right] = colors[left]
    return np.array([colors[name] for name in ("background",) + PART_NAMES], dtype=np.float32)


def smooth_noise(rng, cells=16):
    """Low-frequency noise in [-1, 1] at 512x512 (blotches for texture and light)."""
    coarse = rng.uniform(0, 255, (cells, cells)).astype(np.uint8)
    fine = Image.fromarray(coarse).resize((SIZE, SIZE), Image.BICUBIC)
    return np.asarray(fine, dtype=np.float32) / 127.5 - 1


def paint_image(label, face, pose, rng):
    """Paint a 512x512 RGB image whose regions follow `label` exactly."""
    image = random_palette(rng)[label]
    noise = smooth_noise(rng)
    ys, xs = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    image += _textures(label, noise, xs, ys, rng)[..., None]
    _paint_details(image, label, face, pose, rng)
    # Dark outlines at region borders, as real edges have.
    edge = np.zeros(label.shape, bool)
    edge[:, 1:] |= label[:, 1:] != label[:, :-1]
    edge[1:, :] |= label[1:, :] != label[:-1, :]
    image[edge] *= 0.8
    direction = rng.uniform(0, 2 * np.pi)
    gradient = (np.cos(direction) * xs + np.sin(direction) * ys) / SIZE
    image *= (1 + rng.uniform(0.1, 0.3) * gradient + 0.05 * noise)[..., None]
    image += rng.normal(0, rng.uniform(2, 7), image.shape).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)


def _textures(label, noise, xs, ys, rng):
    texture = 25 * noise * (label == 0)  # blotchy background
    hair_angle = rng.uniform(0, np.pi)
    strands = np.sin((np.cos(hair_angle) * xs + np.sin(hair_angle) * ys) / rng.uniform(2, 5))
    texture += 18 * strands * (label == PART_NAMES.index("hair") + 1)
    if rng.random() < 0.5:  # striped clothes
        stripes = np.sign(np.sin(ys / rng.uniform(5, 12)))
        texture += 30 * stripes * (label == PART_NAMES.index("cloth") + 1)
    return texture


def _paint_details(image, label, face, pose, rng):
    """Irises, nostrils and spectacle frames: image-only details inside their regions."""
    eye_x, eye_y = face["eye_x"], face["eye_y"]
    iris = rasterize(pose, [ellipse(-eye_x, eye_y, 10, 10, 24), ellipse(eye_x, eye_y, 10, 10, 24)])
    eyes = (label == PART_NAMES.index("l_eye") + 1) | (label == PART_NAMES.index("r_eye") + 1)
    image[iris & eyes] = rng.uniform(20, 110, 3)
    nostrils = rasterize(pose, [ellipse(-8, 45, 5, 3, 12), ellipse(8, 45, 5, 3, 12)])
    image[nostrils & (label == PART_NAMES.index("nose") + 1)] *= 0.55
    if face["eye_g"]:
        frame = rasterize(
            pose,
            [ellipse(-eye_x, eye_y, 36, 25), ellipse(eye_x, eye_y, 36, 25)],
            [ellipse(-eye_x, eye_y, 27, 16), ellipse(eye_x, eye_y, 27, 16)],
        )
        lenses = label == PART_NAMES.index("eye_g") + 1
        image[lenses] = 0.6 * image[lenses] + 0.4 * np.array([120, 140, 160])
        image[lenses & frame] = rng.uniform(0, 80, 3)


def draw_sample(image_id, seed):
    """Face `image_id` drawn from the generator of (seed, image_id): its RGB image, its part
    masks `{part: bool (512, 512)}` and its CelebAMask-HQ label map."""
    rng = np.random.default_rng((seed, image_id))
    face, pose = random_face(rng), random_pose(rng)
    masks = draw_masks(face, pose, rng)
    label = merge(masks)
    return paint_image(label, face, pose, rng), masks, label
