"""The review as a Rerun recording (``hub-pgen report OUT --rrd FILE``), for the viewer
``lerobot-dataset-viz`` uses: every frame of each camera, with the skill and the dialogue in force
as text, on the ``frame_index`` and ``timestamp`` timelines of each episode (and ``index``, the
dataset-wide row, to play episodes one after another).

Entities, per episode ``E`` (``episode_000E``):
  ``E/<camera>``   EncodedImage (JPEG, the longer side at most ``max_side`` px), every frame
  ``E/skill``      TextDocument: the skill at that frame (``(no skill)`` in a gap)
  ``E/dialogue``   TextDocument: the dialogue its frames carry (``(no dialogue)`` where -1)
  ``E/samples``    TextLog at each sample's frame: status, user prompt and robot reply, or the error

rerun-sdk is an optional dependency: ``pip install "hub-pgen[rerun]"``.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hub_pgen import fsio
from hub_pgen.data import ImageRef, JournalRecord, Sample
from hub_pgen.errors import FrameError, ModelLoadError, OutputError
from hub_pgen.frames import iter_sample_images
from hub_pgen.install import pip_install
from hub_pgen.review.model import EpisodeView, Review, episode_records
from hub_pgen.textsafe import well_formed

MAX_SIDE = 320
JPEG_QUALITY = 75


def require() -> None:
    """Raise the error a missing rerun-sdk gives, before any work is done."""
    _rerun()


def _rerun() -> Any:
    try:
        import rerun as rr
    except ImportError as e:
        raise ModelLoadError("--rrd needs rerun-sdk, which this Python does not have",
                             hint=f"{pip_install('rerun')} (or pip install rerun-sdk)") from e
    return rr


def entity(ep: int, name: str) -> str:
    return f"episode_{ep:04d}/{name}"


def export(review: Review, path: Path, *, max_side: int = MAX_SIDE) -> dict[str, int]:
    """Write the recording to ``path`` (whole or not at all: written beside it under a new random
    name, then renamed over it, so a link at ``path`` or a planted ``FILE.tmp`` is never written
    through). Returns what was logged: ``frames`` (images), ``episodes``, ``samples``."""
    rr = _rerun()
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with fsio.temp_beside(path) as tmp:
            return _export(rr, review, path, tmp, max_side)
    except OSError as e:
        if isinstance(e, OutputError):
            raise
        raise OutputError(f"cannot write the recording {path}: {e.strerror or e}", path=path,
                          hint="give --rrd a file in a folder you can write") from e


def _export(rr: Any, review: Review, path: Path, tmp: Path, max_side: int) -> dict[str, int]:
    rec = rr.RecordingStream("hub-pgen", recording_id=f"hub-pgen-{review.provenance.get('fingerprint', 'review')}")
    counts = {"frames": 0, "episodes": 0, "samples": 0, "unreadable_frames": 0}
    try:
        try:
            rec.save(str(tmp))
        except (OSError, RuntimeError) as e:  # rerun-sdk reports a file it cannot create as a RuntimeError
            raise OutputError(f"cannot write the recording {path}: {e}", path=path,
                              hint="give --rrd a file in a folder you can write") from e
        rec.send_recording_name(well_formed(f"hub-pgen review: {review.name} (from {review.source_name})"))
        cameras = [k for k in review.source.camera_keys]
        records = episode_records(review)  # every record of the episodes logged, in full (the page holds few)
        for ep in review.episodes:
            counts["episodes"] += 1
            counts["samples"] += len(records[ep.index])
            _episode(rr, rec, review, ep, records.pop(ep.index), cameras, max_side, counts)
        rec.flush()
        rec.disconnect()
        try:
            os.replace(tmp, path)
        except OSError as e:
            raise OutputError(f"cannot write the recording {path}: {e.strerror or e}", path=path,
                              hint="give --rrd a file in a folder you can write") from e
    except BaseException:
        rec.disconnect()  # the temp file is removed by temp_beside
        raise
    return counts


def _episode(rr: Any, rec: Any, review: Review, ep: EpisodeView, records: list[JournalRecord], cameras: list[str],
             max_side: int, counts: dict[str, int]) -> None:
    source = review.source
    meta = source.episodes[ep.index]
    skill_at = _changes(ep.length, [(round(s.start * ep.fps), round(s.end * ep.fps), s.name) for s in ep.skills],
                        "(no skill)")
    dialogue_at = _changes(ep.length, [(r.frame_start, r.frame_end, f"User: {r.user_prompt}\nRobot: {r.robot_utterance}")
                                       for r in records if r.status == "ok" and r.frame_start is not None
                                       and r.frame_end is not None], "(no dialogue)")
    logs: dict[int, list[Any]] = {}
    for r in records:
        if r.frame_index is None:
            continue
        if r.status == "ok":
            text, level = f"[ok] {r.skill_current}\nUser: {r.user_prompt}\nRobot: {r.robot_utterance}", "INFO"
        elif r.status == "filtered":
            text, level = f"[filtered] {r.skill_current}: {r.error}\nUser: {r.user_prompt}\nRobot: {r.robot_utterance}", "WARN"
        else:
            text, level = f"[failed] {r.skill_current}: {r.error}", "ERROR"
        logs.setdefault(r.frame_index, []).append(rr.TextLog(well_formed(text), level=level))

    def frames() -> Iterator[Sample]:
        for f in range(ep.length):
            refs = []
            for cam in cameras:
                if cam in meta.videos:
                    refs.append(ImageRef(camera=cam, timestamp=f / ep.fps))
                elif source.features[cam].get("dtype") == "image":
                    refs.append(ImageRef(camera=cam, row=meta.dataset_from_index + f))
            yield Sample(sample_id=str(f), episode_index=ep.index, episode_id=str(ep.index), frame_index=f,
                         timestamp=f / ep.fps, skill_current="", skill_history=(), task_description=ep.task,
                         scenario_type="", response_type="", images=tuple(refs))

    for sample, images in iter_sample_images(list(frames()), source=source, base_dir=review.root):
        f = sample.frame_index or 0
        rec.set_time("frame_index", sequence=f)
        rec.set_time("timestamp", duration=f / ep.fps)
        rec.set_time("index", sequence=meta.dataset_from_index + f)
        if f in skill_at:
            rec.log(entity(ep.index, "skill"), rr.TextDocument(well_formed(skill_at[f]), media_type="text/plain"))
        if f in dialogue_at:
            rec.log(entity(ep.index, "dialogue"), rr.TextDocument(well_formed(dialogue_at[f]), media_type="text/plain"))
        for log in logs.get(f, ()):
            rec.log(entity(ep.index, "samples"), log)
        if isinstance(images, FrameError):
            counts["unreadable_frames"] += 1
            continue
        for ref, im in zip(sample.images, images):
            rec.log(entity(ep.index, ref.camera or "image"),
                    rr.EncodedImage(contents=_jpeg(im, max_side), media_type="image/jpeg"))
            counts["frames"] += 1


def _changes(length: int, spans: list[tuple[int, int, str]], empty: str) -> dict[int, str]:
    """frame → the text in force from that frame on, at each frame where it changes."""
    at: list[str] = [empty] * length
    for start, end, text in spans:
        for f in range(max(0, start), min(length, end)):
            at[f] = text
    out: dict[int, str] = {}
    prev = None
    for f, text in enumerate(at):
        if text != prev:
            out[f] = text
            prev = text
    return out


def _jpeg(image: Any, max_side: int) -> bytes:
    from hub_pgen.review.thumbs import shrink

    im = shrink(image, max_side)
    buf = io.BytesIO()
    im.convert("RGB").save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()
