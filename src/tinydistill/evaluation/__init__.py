"""Scoring saved students (ranked, generated, open QA), error analysis, and what a run reports: markdown,
JSON, HTML, console tables and the model card."""

from .analysis import analyze_run, summary_line, write_analysis
from .console import COLUMNS, TEACHER_NOTE, console, outcome_rows, print_outcome, results_table, teacher_rows
from .evaluate import EvalResult, evaluate_student, evaluate_teacher
from .html_report import html_page, write_html_report
from .openqa import evaluate_open
from .outcome import RunOutcome
from .report import markdown_table, write_run_report
from .run_extras import write_run_extras

__all__ = ["COLUMNS", "EvalResult", "TEACHER_NOTE", "RunOutcome", "analyze_run", "console", "evaluate_open",
           "evaluate_student", "evaluate_teacher", "html_page", "markdown_table", "outcome_rows", "print_outcome",
           "results_table", "summary_line", "teacher_rows", "write_analysis", "write_html_report",
           "write_run_extras", "write_run_report"]
