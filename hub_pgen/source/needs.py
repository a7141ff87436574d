"""Which files of a Hub dataset a run needs, and when: download what the next stage reads, no more.

A LeRobot v3.0 dataset keeps many episodes in each data parquet and each video file, and
``meta/episodes`` says which file holds which episode (:class:`~hub_pgen.data.Episode`'s
``data_path`` and ``videos``). A run fetches in three steps (:func:`hub_pgen.source.hub.fetch`):

1. **before the plan**: the data files the plan reads (:func:`plan_data`) — every one, except for an
   ``--episodes`` subset (its episodes' files) and a shard (its own episodes' files, see below);
2. **before generation**: the videos of the cameras the model sees, for the episodes that have
   samples to generate (none for the template backend, none for a dry run);
3. **before the dataset is written**: everything else (:func:`~hub_pgen.source.hub.fetch_rest`), since
   the new dataset is complete. A shard, a dry run and ``hub-pgen label`` write no dataset, and never
   take this step.

A shard (``--num-shards N --shard-index I``) must plan the whole job — the type schedule runs over
every sample of every episode — but generate only its own episodes. How many samples another
shard's episode has depends on its frame times, which lie in its data file. lerobot writes them on a
grid (``timestamp = frame_index / fps``), and ``meta/episodes`` carries each episode's timestamp
stats; where those stats are the grid's (``Episode.on_grid``), the shard plans that episode from
the grid, without its file (:func:`hub_pgen.plan.planner.grid_times`). So a shard fetches the data and
videos of its own episodes, and the data of episodes whose stats do not vouch for a grid. If its own
episodes' real times then disagree with the grid (stats that lie), it fetches every data file and
plans again. Sources with language columns (their rows decide which frames are already taken, and
``--skills language`` reads the skills from them) always fetch every data file. The merge reads
every file and checks each shard's records against its plan.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from hub_pgen.data import SourceDataset


def files(source: SourceDataset, *, data: Collection[int] | None, videos: Collection[int] | None,
          cameras: Sequence[str]) -> list[str]:
    """The data files of episodes ``data`` and the video files of ``cameras`` for episodes ``videos``
    (None: every episode), relative to the dataset root, sorted, each once."""
    out: set[str] = set()
    for e, ep in source.episodes.items():
        if data is None or e in data:
            out.add(ep.data_path)
        if videos is None or e in videos:
            out.update(ep.videos[c].path for c in cameras if c in ep.videos)
    return sorted(out)


def has_language(source: SourceDataset) -> bool:
    """The source declares lerobot's language columns (their rows live in the data files)."""
    from hub_pgen import language

    return any(c in source.features for c in language.COLUMNS)


def plan_data(source: SourceDataset, episodes: Collection[int] | None) -> set[int] | None:
    """The episodes whose data files the plan of ``episodes`` (None: all) reads; None for all of them."""
    if episodes is None or has_language(source):
        return None
    return set(episodes)


def off_grid(source: SourceDataset, episodes: Collection[int] | None = None) -> set[int]:
    """Of ``episodes`` (None: all), those whose frame times cannot be known without their data file."""
    chosen = source.episodes if episodes is None else {e: source.episodes[e] for e in episodes if e in source.episodes}
    return {e for e, ep in chosen.items() if not ep.on_grid}
