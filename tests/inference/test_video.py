import numpy as np
import pytest
from PIL import Image

from faceparsing.inference import video

pytest.importorskip("imageio_ffmpeg")


def write_clip(path, frames, fps=10):
    with video.video_writer(path, fps) as write:
        for frame in frames:
            write(frame)


def coloured_frames(count=4, height=36, width=50):
    """Frames whose left part brightens over time, so frame order is visible."""
    frames = np.zeros((count, height, width, 3), np.uint8)
    for index in range(count):
        frames[index, :, : width // 2] = (40 + 50 * index, 60, 200)
    return frames


def test_round_trip_keeps_frames_size_and_order(tmp_path):
    frames = coloured_frames()
    write_clip(tmp_path / "clip.mp4", frames)
    decoded, fps, count = video.read_frames(tmp_path / "clip.mp4")
    decoded = list(decoded)
    assert fps == pytest.approx(10) and count == len(frames) == len(decoded)
    assert decoded[0].shape == frames[0].shape
    means = [frame[:, :20, 0].mean() for frame in decoded]
    np.testing.assert_allclose(means, frames[:, :, :20, 0].mean(axis=(1, 2)), atol=6)


def test_odd_sizes_are_padded_to_even(tmp_path):
    write_clip(tmp_path / "odd.mp4", coloured_frames(2, 21, 33))
    decoded, _, _ = video.read_frames(tmp_path / "odd.mp4")
    assert next(decoded).shape == (22, 34, 3)


def test_process_video_writes_overlay_and_masks_per_frame(tmp_path):
    frames = coloured_frames(3)
    write_clip(tmp_path / "in.mp4", frames)
    seen = []

    def parse_frame(frame):
        seen.append(frame.shape)
        label = (frame[..., 2] > 100).astype(np.uint8)  # "skin" where the blue band is
        return label, 255 - frame, {"faces": []}

    out = tmp_path / "out"
    summary = video.process_video(tmp_path / "in.mp4", out, parse_frame, save_masks=True)
    assert summary["frames"] == 3 and [r["frame"] for r in summary["records"]] == [0, 1, 2]
    masks = sorted((out / "in_masks").glob("*.png"))
    assert [m.name for m in masks] == ["000000.png", "000001.png", "000002.png"]
    mask = np.asarray(Image.open(masks[1]))
    assert (
        mask.shape == frames.shape[1:3] and (mask[:, :20] == 1).all() and (mask[:, 30:] == 0).all()
    )
    overlay, _, count = video.read_frames(out / "in_overlay.mp4")
    assert count == 3 and next(overlay)[:, 30:].mean() > 200  # the inverted black half
    assert not list(out.glob(".*tmp*"))


def test_failed_video_leaves_no_file(tmp_path):
    write_clip(tmp_path / "in.mp4", coloured_frames(3))

    def broken(frame):
        raise RuntimeError("model failed")

    with pytest.raises(RuntimeError, match="model failed"):
        video.process_video(tmp_path / "in.mp4", tmp_path / "out", broken)
    assert not [p for p in (tmp_path / "out").iterdir() if p.is_file()]


def test_unreadable_video_is_a_one_line_error(tmp_path):
    (tmp_path / "notes.mp4").write_text("not a video")
    with pytest.raises(video.VideoError, match=r"cannot read video .*notes\.mp4"):
        video.read_frames(tmp_path / "notes.mp4")
    with pytest.raises(video.VideoError, match="file not found"):
        video.read_frames(tmp_path / "missing.mp4")


def test_folders_list_photos_and_videos(tmp_path):
    for name in ("a.jpg", "b.mp4", "c.txt", "d.MOV"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in video.list_media(tmp_path)] == ["a.jpg", "b.mp4", "d.MOV"]
    assert video.is_video("x.mkv") and not video.is_video("x.png")


def test_landmarks_for_a_video_are_refused_in_one_line(tmp_path, capsys, monkeypatch):
    import visualize

    monkeypatch.setattr(visualize, "load_checkpoint", pytest.fail)  # refused before any work
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"")
    landmarks = tmp_path / "faces.json"
    landmarks.write_text('{"clip.mp4": [[[1, 1], [3, 1], [2, 2], [1, 3], [3, 3]]]}')
    for source in (["--video", str(clip)], ["--images", str(clip)]):
        arguments = [*source, "--checkpoint", "x.keras", "--landmarks", str(landmarks)]
        assert visualize.main([*arguments, "--out", str(tmp_path / "out")]) == 2
        error = capsys.readouterr().err
        assert (
            error.count("\n") == 1 and f"--landmarks gives the faces of photos, and {clip}" in error
        )


def test_the_overlay_keeps_the_sources_audio_track(tmp_path):
    import subprocess

    import imageio_ffmpeg

    source = tmp_path / "talk.mp4"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-y",
                    "-f", "lavfi", "-i", "testsrc=size=64x48:rate=10",
                    "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=8000", "-t", "1",
                    "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest",
                    str(source)], check=True, timeout=60)  # fmt: skip
    silent = tmp_path / "silent.mp4"
    write_clip(silent, coloured_frames())

    def parse_frame(frame):
        return np.zeros(frame.shape[:2], np.uint8), frame, {}

    for clip, audio in ((source, True), (silent, False)):
        video.process_video(clip, tmp_path / "out", parse_frame, progress=False)
        assert video.has_audio(tmp_path / "out" / f"{clip.stem}_overlay.mp4") is audio
