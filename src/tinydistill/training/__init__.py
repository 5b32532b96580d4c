"""The training loop (:mod:`.trainer`), crash-safe checkpoints, how it runs across processes (:mod:`.parallel`),
experiment trackers and the CPU helpers the loop uses."""

from .parallel import is_main_process, launched_shard, main_process_first, parse_shard, shard, share_from_main
from .trainer import Selection, TrainResult, train

__all__ = ["Selection", "TrainResult", "is_main_process", "launched_shard", "main_process_first", "parse_shard",
           "shard", "share_from_main", "train"]
