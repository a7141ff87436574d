"""Frames stage: images at the planned moments, checked pixel-wise against what the fixture encoded."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hub_pgen.data import ImageRef, Sample
from hub_pgen.errors import FrameError
from hub_pgen.example import ExampleSpec, build_example_dataset, expected_frame, read_frame_id
from hub_pgen.frames import FrameSource, VideoCursor, iter_sample_images
from hub_pgen.plan.planner import build_plan
from hub_pgen.source.lerobot import load_source
from hub_pgen.source.skills import load_skills

CAMS = ("observation.images.up", "observation.images.side")


def plan_samples(root: Path, strategy: str = "frame", cameras=CAMS, **kw):
    source = load_source(root, check_videos=cameras)
    skills = load_skills(root / "meta" / "skills.json", known_episodes=set(source.episodes))
    return source, build_plan(source, skills, strategy=strategy, cameras=cameras, **kw).samples


def close_to(img: Image.Image, want: np.ndarray) -> bool:
    """Lossy codecs: same picture, small per-pixel error."""
    diff = np.abs(np.asarray(img, dtype=np.int16) - want.astype(np.int16))
    return img.size == (want.shape[1], want.shape[0]) and diff.mean() < 8


@pytest.mark.parametrize("fixture", ["example_root", "example_h264_root"])
def test_every_frame_of_every_episode_matches_what_was_encoded(fixture, request):
    root = request.getfixturevalue(fixture)
    spec = ExampleSpec(codec="h264" if "h264" in fixture else "av1")
    source, samples = plan_samples(root)
    files = {ep.videos[CAMS[0]].path for ep in source.episodes.values()}
    mid_file = [e for e, ep in source.episodes.items() if ep.videos[CAMS[0]].from_timestamp > 0]
    assert len(files) == 2 and mid_file  # episodes in the middle of a shared file are covered
    seen = 0
    with FrameSource(source) as frames:
        for s in samples:
            imgs = frames.images(s)
            assert len(imgs) == 2
            for cam, img in zip(CAMS, imgs):
                assert img.mode == "RGB"
                assert read_frame_id(img) == (s.episode_index, s.frame_index)
                assert close_to(img, expected_frame(spec, cam, s.episode_index, s.frame_index))
            seen += 1
    assert seen == len(samples) > 200
    # at most one forward pass per (camera, file): never more frames than up to the last one needed
    # (fewer where it seeks over the fixture's unannotated gap)
    last: dict[str, int] = {}
    for s in samples:
        span = source.episodes[s.episode_index].videos[CAMS[0]]
        last[span.path] = max(last.get(span.path, 0), round((span.from_timestamp + s.timestamp) * source.fps) + 1)
    assert frames.decoded <= 2 * sum(last.values())


def test_sparse_samples_seek_instead_of_decoding_everything(tmp_path):
    spec = ExampleSpec(n_episodes=4, frames_per_episode=120, episodes_per_file=4, skills="regular")
    root = build_example_dataset(tmp_path / "ds", spec)
    source, samples = plan_samples(root, "segment", cameras=CAMS[:1])
    with FrameSource(source) as frames:
        for s in samples:
            (img,) = frames.images(s)
            assert read_frame_id(img) == (s.episode_index, s.frame_index)
    assert frames.seeks > 0 and frames.decoded < 4 * 120 // 2


def test_sparse_keyframes_fall_back_to_decoding_forward(tmp_path):
    # one keyframe per episode: a seek lands back at the episode start, so stop seeking
    spec = ExampleSpec(n_episodes=2, frames_per_episode=200, episodes_per_file=2, skills="regular", gop=1000)
    root = build_example_dataset(tmp_path / "ds", spec)
    source = load_source(root)
    refs = [(0, f) for f in (0, 40, 80, 120, 160, 199)] + [(1, f) for f in (0, 100, 199)]
    cursor = VideoCursor(root / source.episodes[0].videos[CAMS[0]].path, source.fps)
    with cursor:
        for e, f in refs:
            t = source.episodes[e].videos[CAMS[0]].from_timestamp + f / source.fps
            assert read_frame_id(cursor.frame_at(t).to_image()) == (e, f)
    assert cursor.decoded <= 400 + 40  # about one pass, not one re-decode per sample


def test_out_of_order_requests_still_get_the_right_frames(example_root):
    source = load_source(example_root)
    ep = source.episodes[1]
    span = ep.videos[CAMS[1]]
    with VideoCursor(example_root / span.path, source.fps) as cursor:
        for f in (30, 29, 5, 44, 0, 44):
            img = cursor.frame_at(span.from_timestamp + f / source.fps).to_image()
            assert read_frame_id(img) == (1, f)


def test_only_the_cameras_asked_for_are_opened(example_root, tmp_path):
    root = tmp_path / "ds"
    shutil.copytree(example_root, root)
    shutil.rmtree(root / "videos" / CAMS[1])  # if the frames stage touched it, samples would fail
    source, samples = plan_samples(root, "segment", cameras=CAMS[:1])
    out = list(iter_sample_images(samples, source=source))
    assert out and all(not isinstance(imgs, FrameError) and len(imgs) == 1 for _, imgs in out)


def test_image_features_come_from_the_parquet_by_global_row(tmp_path):
    spec = ExampleSpec(cameras=CAMS[:1], image_features=("observation.images.wrist",))
    root = build_example_dataset(tmp_path / "ds", spec)
    source, samples = plan_samples(root, "interval", cameras=("observation.images.wrist", CAMS[0]),
                                   interval=0.3)
    assert any(s.episode_index >= 4 for s in samples)  # second data file too
    for s, imgs in iter_sample_images(samples, source=source):
        assert s.images[0].row is not None and s.images[1].timestamp is not None
        wrist, up = imgs
        assert np.array_equal(np.asarray(wrist), expected_frame(spec, "observation.images.wrist",
                                                                s.episode_index, s.frame_index))  # PNG: exact
        assert read_frame_id(up) == (s.episode_index, s.frame_index)


def test_max_pixels_bounds_every_image_and_keeps_the_aspect(example_root):
    source, samples = plan_samples(example_root, "segment")
    for s, imgs in iter_sample_images(samples[:5], source=source, max_pixels=1000):
        for img in imgs:
            assert img.width * img.height <= 1000
            assert abs(img.width / img.height - 64 / 48) < 0.1
            assert read_frame_id(img) == (s.episode_index, s.frame_index)  # still the right frame


def test_a_damaged_video_fails_its_samples_only(example_root, tmp_path):
    root = tmp_path / "ds"
    shutil.copytree(example_root, root)
    source, samples = plan_samples(root, "segment")
    bad = root / source.episodes[5].videos[CAMS[0]].path  # file 1: episodes 4 and 5
    bad.write_bytes(bad.read_bytes()[:200])
    results = list(iter_sample_images(samples, source=source))
    assert [s.sample_id for s, _ in results] == [s.sample_id for s in samples]  # order kept, nothing lost
    failed = {s.episode_index for s, imgs in results if isinstance(imgs, FrameError)}
    assert failed == {4}  # episode 5 shares the file but has no skills, so no samples
    err = next(imgs for _, imgs in results if isinstance(imgs, FrameError))
    assert str(bad) in str(err)


def test_a_missing_video_says_which_file(example_root, tmp_path):
    root = tmp_path / "ds"
    shutil.copytree(example_root, root)
    source, samples = plan_samples(root, "segment")
    missing = root / source.episodes[0].videos[CAMS[1]].path
    missing.unlink()
    results = dict((s.sample_id, imgs) for s, imgs in iter_sample_images(samples, source=source))
    errors = [v for v in results.values() if isinstance(v, FrameError)]
    assert errors and all("does not exist" in str(e) and str(missing) in str(e) for e in errors)
    assert any(not isinstance(v, FrameError) for v in results.values())  # file 1 still fine


def test_a_time_past_the_end_of_the_file_is_a_frame_error(example_root):
    source = load_source(example_root)
    span = source.episodes[5].videos[CAMS[0]]
    with VideoCursor(example_root / span.path, source.fps) as cursor, pytest.raises(FrameError, match="no frame at"):
        cursor.frame_at(span.to_timestamp + 1.0)


def _jsonl_sample(i: int, paths: list[str]) -> Sample:
    return Sample(f"s{i}", None, f"e{i}", i, None, "pick", (), "task", "negative_task", "simple_confirmation",
                  images=tuple(ImageRef(path=p) for p in paths))


def test_jsonl_images_load_relative_to_base_dir_and_a_bad_one_fails_its_sample(tmp_path):
    Image.fromarray(np.full((30, 40, 3), 200, np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    samples = [_jsonl_sample(0, ["a.png", str(tmp_path / "a.png")]), _jsonl_sample(1, ["missing.png"]),
               _jsonl_sample(2, ["broken.png"]), _jsonl_sample(3, ["a.png"])]
    out = list(iter_sample_images(samples, source=None, base_dir=tmp_path))
    assert [len(v) for _, v in (out[0], out[3])] == [2, 1] and out[0][1][0].size == (40, 30)
    assert isinstance(out[1][1], FrameError) and "does not exist" in str(out[1][1])
    assert isinstance(out[2][1], FrameError) and "cannot be read" in str(out[2][1])


def _scheduling() -> tuple[int, int]:
    return os.sched_getscheduler(0), os.sched_getparam(0).sched_priority


@pytest.mark.skipif(not hasattr(os, "sched_getscheduler"), reason="Linux scheduling policies")
def test_encoding_the_example_leaves_this_process_scheduled_as_it_was(tmp_path):
    # PyAV's SVT-AV1 makes its calling thread SCHED_FIFO 99 when run as root (as CI and many containers
    # do); left so, `hub-pgen demo --backend transformers` hung for good on 2 cores (torch's spinning
    # threads, real-time, never yield). As root this fails without keep_scheduling; as a user SVT cannot.
    before = _scheduling()
    build_example_dataset(tmp_path / "ds", ExampleSpec(n_episodes=1, frames_per_episode=12, episodes_per_file=1,
                                                       cameras=CAMS[:1]))
    assert _scheduling() == before


@pytest.mark.skipif(not hasattr(os, "sched_getscheduler"), reason="Linux scheduling policies")
def test_keep_scheduling_puts_back_a_policy_changed_inside():
    from hub_pgen.example.frames import keep_scheduling

    before = _scheduling()
    with keep_scheduling():
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
        except PermissionError:
            pytest.skip("raising the policy to SCHED_FIFO needs root")
        assert _scheduling() == (os.SCHED_FIFO, 1)
    assert _scheduling() == before
