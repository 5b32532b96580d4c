"""Rows from any source into one typed :class:`Example`: records and their validation, loaders, splits,
`data check`, the student's prompts, teacher rationale parsing, and the order rows are batched in."""

from .batching import epoch_batches, longest_first_batches
from .check import check_config_data, check_data
from .loaders import load_examples, majority_baseline, read_records, split_of_file
from .prompts import answer_target, format_choices, parse_answer
from .rationales import clean_rationale, stated_answer, without_stated_answer
from .records import LETTERS, Example
from .splits import dataset_label, load_split, load_train_valid

__all__ = ["Example", "LETTERS", "answer_target", "check_config_data", "check_data", "clean_rationale",
           "dataset_label", "epoch_batches", "format_choices", "load_examples", "load_split", "load_train_valid",
           "longest_first_batches", "majority_baseline", "parse_answer", "read_records", "split_of_file",
           "stated_answer", "without_stated_answer"]
