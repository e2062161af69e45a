"""drawing: synthetic faces, drawn at CelebAMask-HQ's mask size. (The set of them that
`faceparsing.data.synthetic` writes is tested in tests/data/test_synthetic.py.)"""

from faceparsing import drawing
from faceparsing.data import release


def test_faces_are_drawn_at_the_release_mask_size():
    image, masks, label = drawing.draw_sample(0, seed=0)
    assert drawing.SIZE == release.MASK_SIZE
    assert (
        image.shape == (release.MASK_SIZE, release.MASK_SIZE, 3) and label.shape == image.shape[:2]
    )
