"""Videos: decode frames, parse each, write an overlay video and per-frame masks.

Decoding and encoding go through `imageio-ffmpeg`, whose wheel ships its own
ffmpeg binary, so no system codec is needed. It is imported only when a video
is read or written.
"""

import contextlib
import importlib
import importlib.util
from pathlib import Path

import numpy as np
from tqdm import tqdm

from faceparsing.errors import DatasetError, first_line
from faceparsing.files import atomic_path
from faceparsing.images import IMAGE_SUFFIXES, list_images, save_png

VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")
IMAGEIO_FFMPEG_INSTALL = 'pip install "imageio-ffmpeg>=0.5,<1" (or: pip install -e ".[faces]")'
# H.264 with 4:2:0 chroma needs even sides; CRF-like quality 8 of 10 keeps label edges crisp.
VIDEO_QUALITY = 8


class VideoError(DatasetError):
    """A video that cannot be read or written; the message names the file."""


def is_video(path):
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def list_media(pattern):
    """Like `list_images`, but a folder also yields its videos."""
    path = Path(pattern)
    if path.is_dir():
        suffixes = IMAGE_SUFFIXES + VIDEO_SUFFIXES
        return sorted(p for p in path.iterdir() if p.suffix.lower() in suffixes)
    return list_images(pattern)


def import_ffmpeg():
    """Import `imageio_ffmpeg`, or raise VideoError saying what to install."""
    if importlib.util.find_spec("imageio_ffmpeg") is None:
        raise VideoError(f"videos need the imageio-ffmpeg package: {IMAGEIO_FFMPEG_INSTALL}")
    return importlib.import_module("imageio_ffmpeg")


def read_frames(path):
    """Open a video: returns (frames, fps, estimated frame count or None).

    `frames` yields uint8 RGB arrays (H, W, 3).
    """
    ffmpeg = import_ffmpeg()
    if not Path(path).is_file():
        raise VideoError(f"cannot read video {path}: file not found")
    reader = ffmpeg.read_frames(str(path), pix_fmt="rgb24")
    try:
        meta = next(reader)
    except (OSError, RuntimeError, StopIteration) as error:
        reason = first_line(error, "no stream")
        raise VideoError(f"cannot read video {path}: {reason}") from None
    width, height = meta["size"]
    fps = float(meta.get("fps") or 25.0)
    duration = meta.get("duration")
    count = round(fps * duration) if duration and np.isfinite(duration) else None

    def frames():
        for data in reader:
            yield np.frombuffer(data, np.uint8).reshape(height, width, 3)

    return frames(), fps, count


def has_audio(path):
    """Whether the video at `path` has an audio track (ffmpeg's view of its streams)."""
    reader = import_ffmpeg().read_frames(str(path), pix_fmt="rgb24")
    try:
        return bool(next(reader).get("audio_codec"))
    except (OSError, RuntimeError, StopIteration):
        return False
    finally:
        reader.close()


def even_sized(frame):
    """Pad a frame by one edge row/column where a side is odd (H.264 needs even sides)."""
    height, width = frame.shape[:2]
    return np.pad(frame, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")


@contextlib.contextmanager
def video_writer(path, fps, audio_from=None):
    """Yield `write(frame)` that appends RGB frames to an H.264 video at `path`.

    With `audio_from` (a video with an audio track), its first audio track is
    muxed in, re-encoded as AAC (which MP4 holds whatever the source's codec).

    The video is written to a temporary file renamed into place when the block
    ends without error and at least one frame was written, so a failure or a
    kill never leaves half a video.
    """
    encoder = None

    def write(frame):
        nonlocal encoder
        frame = even_sized(np.ascontiguousarray(frame, dtype=np.uint8))
        if encoder is None:
            encoder = import_ffmpeg().write_frames(
                str(temp_path),
                (frame.shape[1], frame.shape[0]),
                fps=fps,
                quality=VIDEO_QUALITY,
                macro_block_size=2,  # sides are even already: never rescale
                output_params=["-loglevel", "error"],
                **({"audio_path": str(audio_from), "audio_codec": "aac"} if audio_from else {}),
            )
            encoder.send(None)  # starts ffmpeg
        encoder.send(frame.tobytes())

    with atomic_path(path) as temp_path:
        try:
            yield write
        finally:
            if encoder is not None:
                encoder.close()
        if encoder is None:
            raise VideoError(f"no frame to write to {path}")


def process_video(path, out_dir, parse_frame, save_masks=False, progress=True):
    """Parse every frame of a video; write `<stem>_overlay.mp4` and, with `save_masks`,
    `<stem>_masks/<frame>.png` (label maps in the official ids, frame size).

    Args:
        path: str or Path. The video.
        out_dir: Path. Output folder.
        parse_frame: callable(frame) -> (label (H, W) uint8, overlay frame (H, W, 3)
            uint8, record dict). Called once per frame, in order.
        save_masks: bool. Also write the per-frame label PNGs. Defaults to False.
        progress: bool. Show a tqdm progress bar. Defaults to True.

    Returns:
        dict: `video`, `fps`, `frames` (count) and `records` (the per-frame dicts).
    """
    path, out_dir = Path(path), Path(out_dir)
    frames, fps, count = read_frames(path)
    records = []
    audio_from = path if has_audio(path) else None  # the overlay keeps the sound
    with video_writer(out_dir / f"{path.stem}_overlay.mp4", fps, audio_from) as write:
        bar = tqdm(frames, total=count, desc=path.name, unit="frame", disable=not progress)
        for index, frame in enumerate(bar):
            label, overlay_image, record = parse_frame(frame)
            write(overlay_image)
            if save_masks:
                save_png(label, out_dir / f"{path.stem}_masks" / f"{index:06d}.png")
            records.append({"frame": index, **record})
        if not records:
            raise VideoError(f"cannot read video {path}: no frame could be decoded")
    return {"video": str(path), "fps": fps, "frames": len(records), "records": records}
