"""hub-pgen: Hi Robot-style synthetic dialogue generation (pgen) for LeRobot v3.0 datasets.

A skill-annotated LeRobot dataset goes in; a new, versioned LeRobot dataset comes out whose every
frame carries ``task_index_high_level``, pointing at a generated (user prompt, robot reply) row of
``meta/tasks.parquet``. The pipeline's stages are subpackages: ``source`` → ``plan`` → ``frames`` →
``generate`` → ``journal`` → ``write`` → ``push``.
"""

__version__ = "0.1.0"
