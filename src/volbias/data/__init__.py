"""Data layer of volbias: the paper's tasks in their official layouts, public samples, LIDC raters, phantoms.

Entry point: ``load_task(name, root=None, **options) -> TaskData``; see ``list_tasks()`` / ``tasks_table()``.
"""

from .case import Case, TaskData
from .errors import DataError
from .load import load_task
from .raters import AGREEMENT_CV, disagreement_table, rater_disagreement, raters_agree, sample_rater
from .registry import TaskSpec, get_spec, list_tasks, tasks_table
from .synthetic import make_phantoms

__all__ = [
    "AGREEMENT_CV", "Case", "DataError", "TaskData", "TaskSpec", "disagreement_table", "get_spec", "list_tasks",
    "load_task", "make_phantoms", "rater_disagreement", "raters_agree", "sample_rater", "tasks_table",
]
