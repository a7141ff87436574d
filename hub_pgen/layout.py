"""Paths and names of the LeRobot v3.0 layout and of hub-pgen's own files, in one place."""

from __future__ import annotations

CODEBASE_VERSION = "v3.0"

INFO_PATH = "meta/info.json"
STATS_PATH = "meta/stats.json"
TASKS_PATH = "meta/tasks.parquet"
EPISODES_DIR = "meta/episodes"
SKILLS_PATH = "meta/skills.json"
DATA_DIR = "data"
VIDEO_DIR = "videos"
CHUNK_FILE_PATTERN = "chunk-{chunk_index:03d}/file-{file_index:03d}"
DEFAULT_DATA_PATH = DATA_DIR + "/" + CHUNK_FILE_PATTERN + ".parquet"
DEFAULT_VIDEO_PATH = VIDEO_DIR + "/{video_key}/" + CHUNK_FILE_PATTERN + ".mp4"
EPISODES_PATH = EPISODES_DIR + "/" + CHUNK_FILE_PATTERN + ".parquet"

# What hub-pgen adds.
FEATURE = "task_index_high_level"
FEATURE_SPEC = {"dtype": "int64", "shape": [1], "names": None}
NO_TASK = -1  # "no generated task here": outside every skill, or generation failed
SYN_ANNOTATIONS_PATH = "meta/syn_annotations.jsonl"
SKILL_ANNOTATIONS_PATH = "meta/hub_pgen_skills.jsonl"  # --skills annotate: each episode's segmentation
PROVENANCE_PATH = "meta/hub_pgen.json"
REPORT_PATH = "meta/hub_pgen_report.html"  # the review page every run writes (hub_pgen.review)
SHARD_THUMBS_PATH = "meta/hub_pgen_thumbs.jsonl"  # a shard's thumbnails for the merged page (review.shard_thumbs)
JSONL_RESULT_NAME = "syn_annotations.jsonl"  # the D_syn file of an --input-jsonl run (no dataset around it)
CARD_PATH = "README.md"
TASK_EXTRA_COLUMNS = ("user_prompt", "robot_utterance", "skill", "scenario_type", "response_type")

# Work state of a run in progress lives beside the output folder, never inside the source.
WORK_SUFFIX = ".partial"
JOURNAL_NAME = "journal.jsonl"
STAGED_SUFFIX = ".merging"  # a merge's journal while its shards are checked (hub_pgen.run.merging.stage_journal)
SKILLS_JOURNAL_NAME = "skills.jsonl"  # --skills annotate: one line per segmented episode
RUN_NAME = "run.json"
STAGING_NAME = "staging"
SERVERS_NAME = "servers"  # logs of model servers the run started (kept when a server fails)
LOCK_NAME = "lock"  # flock'ed for the run's lifetime (hub_pgen.write.lock)
PASS_NAME = "pass"  # the pass over the records alongside generation: its checkpoint (hub_pgen.run.running_pass)
PREVIOUS_NAME = "previous"  # --retry-failed: the earlier result, moved aside until the new one is in place

# Float32 timestamps: a frame at ts belongs to a skill when start - EPS <= ts < end - EPS.
TIME_EPS = 1e-4

# What the new dataset carries (--format): the seed's columns, lerobot's language columns, or both.
FORMATS = {
    "both": ("hirobot", "language"),
    "hirobot": ("hirobot",),  # task_index_high_level + appended tasks.parquet rows (lerobot feat/add-hirobot)
    "lerobot-language": ("language",),  # language_persistent + language_events (lerobot >= 0.6.0)
}
DEFAULT_FORMAT = "both"
