"""The training loop (:mod:`.trainer`), crash-safe checkpoints, how it runs across processes (:mod:`.parallel`),
experiment trackers and the CPU helpers the loop uses."""

from .checkpoint import newest_state
from .parallel import is_main_process, launched_shard, main_process_first, parse_shard, shard, share_from_main
from .tracking import RATIONALE_STAGE, TrackedStage, TrackerRun, run_config
from .trainer import Selection, TrainResult, train

__all__ = ["RATIONALE_STAGE", "Selection", "TrackedStage", "TrackerRun", "TrainResult", "is_main_process",
           "launched_shard", "main_process_first", "newest_state", "parse_shard", "run_config", "shard",
           "share_from_main", "train"]
