"""Analysis of training runs: cases.csv tables, summaries with CIs, paired tests, figures, claims."""

from volbias.analysis.claims import CLAIMS, PAPER_UNCERTAINTY, claims_table
from volbias.analysis.results_store import ResultSet, read_result_sets, write_manifest
from volbias.analysis.tables import (
    add_volume_errors,
    bootstrap_ci,
    paired_test,
    summarize,
    volume_bias_table,
)

__all__ = [
    "CLAIMS", "PAPER_UNCERTAINTY", "ResultSet", "add_volume_errors", "bootstrap_ci", "claims_table",
    "paired_test", "read_result_sets", "summarize", "volume_bias_table",
    "write_manifest",
]
