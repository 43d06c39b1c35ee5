"""Results presented to readers: numbers formatted for the book, result frames rendered as HTML tables.

Every table of the book goes through :func:`table` (or one of the presets built on it,
:func:`volume_bias`, :func:`summary`, :func:`paired_test`), used as ``present.table(...)``
(the module is not called ``display``, which would hide IPython's ``display`` in notebooks): it hides the index,
spells out group names (losses, tasks), writes estimates with their confidence intervals as
``+6.3 % [-2.0, +14.1]`` (fractions in, percent out) or ``0.873 [0.851, 0.897]``, to the digits their
interval supports, puts units into the headers, and marks the table with the class ``volbias-table``.

Every table must fit the book's text column (the browser check fails on one that does not). What makes
a table fit:

- short row labels: :func:`short_labels` gives long group names codes, and :func:`legend` is the small
  table that says what each code stands for (use the codes in the table through ``text(header, names)``);
- ``ci="below"``: each estimate's interval on a second line of its cell, which halves the width of
  estimate columns;
- :func:`split_table`: one table per question, each with the key columns, instead of one wide table;
- ``layout="full-width"``: the theme's full-width layout (the text column plus the right margin), only
  for a table that still needs it.

The result is a pandas ``Styler`` (pandas' own HTML table renderer); a notebook cell that ends with
one shows the table (several: ``display(*tables)``). What pandas lacks, and is written here, is only the
number formatting.
"""

from __future__ import annotations

import hashlib
import html
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import pandas as pd
from pandas.io.formats.style import Styler

TABLE_CLASS = "volbias-table"
"""CSS class of every book table (``_static/volbias.css``)."""

FULL_WIDTH_CLASS = "full-width"
"""CSS class of a table laid out over the text column and the right margin (the theme's full width)."""

SHORT_TEXT = 24
"""Text columns with values up to this many characters are kept on one line; longer text wraps."""

LONG_TEXT_WIDTH = "9em"
"""Narrowest width of a column of longer text, so that it wraps into a few lines, not one word per line."""

Layout = Literal["column", "full-width"]
CiPlacement = Literal["inline", "below"]

MISSING = "–"
"""How a missing value (NaN) is shown."""

LOSS_LABELS: dict[str, str] = {
    "ce": "CE", "sd": "SD", "ce-ce": "CE-CE", "ce-sd": "CE-SD", "dml": "DML", "dsc++": "DSC++",
    "tversky": "Tversky", "focal": "focal", "ce+sd": "CE+SD",
}
"""Short loss labels for legends and axes (the text defines each abbreviation)."""

LOSS_NAMES: dict[str, str] = {
    "ce": "cross-entropy (CE)",
    "sd": "soft Dice (SD)",
    "ce-ce": "CE, then CE restarted (CE-CE)",
    "ce-sd": "CE, then soft Dice (CE-SD)",
    "dml": "Dice semimetric loss (DML)",
    "dsc++": "DSC++",
    "tversky": "Tversky",
    "focal": "focal loss",
    "ce+sd": "CE + soft Dice (CE+SD)",
}
"""Full loss names for tables."""

TASK_NAMES: dict[str, str] = {
    "BR18": "BraTS 2018 (BR18)",
    "BR18-sample": "BraTS 2018 sample",
    "IS17": "ISLES 2017 (IS17)",
    "IS18": "ISLES 2018 (IS18)",
    "MO17": "third molars (MO17)",
    "LIDC": "LIDC-IDRI nodules",
    "synthetic": "synthetic phantoms",
}
"""Full task names for tables."""


def loss_label(name: str) -> str:
    """Short label of a loss (``"ce-sd"`` -> ``"CE-SD"``); CE-X schedules of other losses too."""
    if name in LOSS_LABELS:
        return LOSS_LABELS[name]
    head, sep, tail = name.partition("-")
    if sep and head == "ce" and tail in LOSS_LABELS:
        return f"CE-{LOSS_LABELS[tail]}"
    return name


def loss_name(name: str) -> str:
    """Full name of a loss for tables (``"sd"`` -> ``"soft Dice (SD)"``); unknown names: the short label."""
    return LOSS_NAMES.get(name, loss_label(name))


def task_name(name: str) -> str:
    """Full name of a task for tables (``"LIDC"`` -> ``"LIDC-IDRI nodules"``); unknown names unchanged."""
    return TASK_NAMES.get(name, name)


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, (float, np.floating)) and not math.isfinite(value))


def format_number(value: float | None, decimals: int, signed: bool = False) -> str:
    """``value`` with ``decimals`` decimals, a ``+`` in front of positive values when ``signed``.

    A value that rounds to zero is shown without a sign (``0.0``, never ``-0.0`` or ``+0.0``).
    """
    if _is_missing(value):
        return MISSING
    rounded = round(float(value), decimals)
    if rounded == 0:
        return f"{0.0:.{decimals}f}"
    return f"{rounded:{'+' if signed else ''}.{decimals}f}"


def format_percent(fraction: float | None, decimals: int = 1, signed: bool = True) -> str:
    """A fraction as percent with its sign: ``0.063`` -> ``"+6.3 %"``."""
    if _is_missing(fraction):
        return MISSING
    return f"{format_number(100 * float(fraction), decimals, signed)} %"


def auto_decimals(values: Sequence[float] | np.ndarray, significant: int = 2, most: int = 4) -> int:
    """Decimals that show the typical magnitude of ``values`` with ``significant`` digits (0 to ``most``).

    Used for CI half-widths (the precision an estimate deserves) and for plain numbers: 0.024 -> 3,
    8.1 -> 1, 40 -> 0. Missing or zero values are ignored; none left gives ``significant``.
    """
    x = np.abs(np.asarray(values, dtype=float))
    x = x[np.isfinite(x) & (x > 0)]
    if x.size == 0:
        return significant
    magnitude = int(f"{float(np.median(x)):.{significant - 1}e}".split("e")[1])  # after rounding: 9.96 -> 1.0e+01
    return int(min(max(significant - 1 - magnitude, 0), most))


def format_estimate(value: float | None, low: float | None, high: float | None, *, as_percent: bool = False,
                    decimals: int | None = None, signed: bool | None = None) -> str:
    """An estimate with its confidence interval: ``"+6.3 % [-2.0, +14.1]"`` or ``"0.873 [0.851, 0.897]"``.

    ``as_percent``: the numbers are fractions, shown as signed percent. ``decimals``: by default from
    the CI half-width (:func:`auto_decimals`, two significant digits; one decimal for percent).
    ``signed``: a ``+`` on positive numbers (default: with ``as_percent``). A missing CI shows the
    estimate alone.
    """
    scale = 100.0 if as_percent else 1.0
    signed = as_percent if signed is None else signed
    numbers = [None if _is_missing(v) else scale * float(v) for v in (value, low, high)]
    has_ci = numbers[1] is not None and numbers[2] is not None
    if decimals is None:
        decimals = 1 if as_percent else auto_decimals([(numbers[2] - numbers[1]) / 2] if has_ci else [numbers[0]])
    shown = format_number(numbers[0], decimals, signed)
    if as_percent and numbers[0] is not None:
        shown += " %"
    if has_ci:
        shown += f" [{format_number(numbers[1], decimals, signed)}, {format_number(numbers[2], decimals, signed)}]"
    return shown


def format_p_value(p: float | None) -> str:
    """A p-value with two significant digits, ``"< 0.001"`` below 0.001."""
    if _is_missing(p):
        return MISSING
    if p < 0.001:
        return "< 0.001"
    return f"{p:.{max(2, auto_decimals([p]))}f}"


Kind = Literal["text", "count", "number", "percent", "estimate", "p"]


@dataclass(frozen=True)
class Column:
    """How one column of a result frame is shown: its header, unit and number format.

    Build columns with :func:`text`, :func:`count`, :func:`number`, :func:`percent`, :func:`estimate`
    and :func:`p_value` rather than directly.
    """

    header: str
    kind: Kind = "text"
    unit: str | None = None
    decimals: int | None = None
    signed: bool = False
    names: Mapping[str, str] | None = None
    low: str | None = None
    high: str | None = None
    as_percent: bool = False

    @property
    def title(self) -> str:
        """The header with its unit: ``"volume error (ml)"``."""
        return f"{self.header} ({self.unit})" if self.unit else self.header


def text(header: str, names: Mapping[str, str] | None = None) -> Column:
    """A label column; ``names`` maps codes to readable names (e.g. :data:`LOSS_NAMES`)."""
    return Column(header, "text", names=names)


def count(header: str, unit: str | None = None) -> Column:
    """An integer column (cases, runs, raters)."""
    return Column(header, "count", unit=unit, decimals=0)


def number(header: str, unit: str | None = None, decimals: int | None = None, signed: bool = False) -> Column:
    """A plain number column; ``decimals`` by default from the column's magnitude (three significant digits)."""
    return Column(header, "number", unit=unit, decimals=decimals, signed=signed)


def percent(header: str, decimals: int = 1, signed: bool = True) -> Column:
    """Fractions shown as percent (``0.063`` -> ``+6.3 %``)."""
    return Column(header, "percent", decimals=decimals, signed=signed)


def estimate(header: str, low: str | None = None, high: str | None = None, unit: str | None = None,
             as_percent: bool = False, decimals: int | None = None, signed: bool | None = None) -> Column:
    """An estimate with its CI from the columns ``low`` and ``high``.

    By default the CI columns are found next to the estimate's column ``c``: ``c_ci_low``/``c_ci_high``,
    else ``ci_low``/``ci_high`` (the long tables of :func:`volbias.analysis.tables.summarize`).
    ``as_percent``: fractions shown as signed percent; ``decimals`` by default from the column's
    median CI half-width.
    """
    return Column(header, "estimate", unit=unit, decimals=decimals, low=low, high=high, as_percent=as_percent,
                  signed=as_percent if signed is None else signed)


def p_value(header: str = "p") -> Column:
    """p-values (two significant digits, ``< 0.001`` below)."""
    return Column(header, "p")


GROUP_COLUMNS: dict[str, Column] = {
    "loss": text("loss", LOSS_NAMES),
    "task": text("task", TASK_NAMES),
    "setting": text("setting"),
    "setting_name": text("setting"),
    "stratum": text("raters marking the nodule"),
    "group": text("group"),
    "fold": count("fold"),
    "seed": count("seed"),
}
"""Default display of the usual grouping columns; pass a :class:`Column` to override."""


def _ci_columns(frame: pd.DataFrame, source: str, column: Column) -> tuple[str, str]:
    candidates = [(column.low, column.high)] if column.low or column.high else [
        (f"{source}_ci_low", f"{source}_ci_high"), ("ci_low", "ci_high")]
    for low, high in candidates:
        if low in frame.columns and high in frame.columns:
            return low, high
    raise KeyError(f"column {source!r}: no confidence-interval columns {candidates[0]} in the table")


def _format_column(frame: pd.DataFrame, source: str, column: Column) -> list[str]:
    values = frame[source]
    if column.kind == "text":
        names = column.names or {}
        return [MISSING if _is_missing(v) else names.get(str(v), str(v)) for v in values]
    if column.kind == "count":
        return [MISSING if _is_missing(v) else f"{int(v):d}" for v in values]
    if column.kind == "p":
        return [format_p_value(v) for v in values]
    if column.kind == "percent":
        return [format_percent(v, column.decimals or 0, column.signed) for v in values]
    if column.kind == "number":
        decimals = column.decimals if column.decimals is not None else auto_decimals(values, significant=3)
        return [format_number(v, decimals, column.signed) for v in values]
    low, high = _ci_columns(frame, source, column)
    decimals = column.decimals
    if decimals is None:
        half = (frame[high] - frame[low]) / 2
        decimals = min(1, auto_decimals(100 * half)) if column.as_percent else auto_decimals(half)
    return [format_estimate(v, lo, hi, as_percent=column.as_percent, decimals=decimals, signed=column.signed)
            for v, lo, hi in zip(values, frame[low], frame[high])]


def _ci_below(shown: str) -> str:
    """An estimate's interval moved to a second line of its cell: ``+6.3 %<br>[-2.0, +14.1]``."""
    value, bracket, interval = shown.partition(" [")
    return f"{value}<br>{bracket.strip()}{interval}" if bracket else shown


def table(frame: pd.DataFrame, columns: Mapping[str, Column | str], caption: str | None = None,
          ci: CiPlacement = "inline", layout: Layout = "column") -> Styler:
    """Render ``frame`` for readers: the ``columns`` in their order, formatted, without the index.

    ``columns`` maps a column of ``frame`` to its :class:`Column` (or just a header for a text
    column). Cell text is HTML-escaped (a rule such as ``p < delta`` shows as written). Numbers are right-aligned and, like short labels, kept on one line; longer text wraps
    within at least :data:`LONG_TEXT_WIDTH`. ``ci="below"`` puts each estimate's interval on a second
    line of its cell; ``layout="full-width"`` lets the table use the right margin too (only where a
    table cannot be made to fit the column). The table gets the class :data:`TABLE_CLASS`.
    """
    if ci not in ("inline", "below") or layout not in ("column", "full-width"):
        raise ValueError(f"ci must be 'inline' or 'below' and layout 'column' or 'full-width', got {ci!r}, {layout!r}")
    specs = {source: text(spec) if isinstance(spec, str) else spec for source, spec in columns.items()}
    missing = [source for source in specs if source not in frame.columns]
    if missing:
        raise KeyError(f"columns {missing} not in the table (it has {list(frame.columns)})")
    frame = frame.reset_index(drop=True)
    shown = pd.DataFrame({spec.title: _format_column(frame, source, spec) for source, spec in specs.items()})
    if shown.columns.has_duplicates:
        raise ValueError(f"two columns share a header: {list(shown.columns)}")
    shown = shown.map(lambda cell: html.escape(cell, quote=False) if isinstance(cell, str) else cell)
    if ci == "below":
        for title in [spec.title for spec in specs.values() if spec.kind == "estimate"]:
            shown[title] = shown[title].map(_ci_below)
    digest = hashlib.sha1(shown.to_json().encode() + (caption or "").encode() + layout.encode()).hexdigest()[:10]
    styler = Styler(shown, uuid=f"t{digest}", cell_ids=False, caption=caption)
    numeric = [spec.title for spec in specs.values() if spec.kind != "text"]
    texts = [spec.title for spec in specs.values() if spec.kind == "text"]
    short_text = [title for title in texts if shown[title].str.len().max() <= SHORT_TEXT]
    long_text = [title for title in texts if title not in short_text]
    classes = TABLE_CLASS if layout == "column" else f"{TABLE_CLASS} {FULL_WIDTH_CLASS}"
    styler = styler.hide(axis="index").set_table_attributes(f'class="{classes}"')
    if numeric:
        styler = styler.set_properties(subset=numeric, **{"text-align": "right", "white-space": "nowrap"})
    if short_text:
        styler = styler.set_properties(subset=short_text, **{"white-space": "nowrap"})
    if long_text:
        styler = styler.set_properties(subset=long_text, **{"min-width": LONG_TEXT_WIDTH})
    return styler


def short_labels(names: Iterable[str], prefix: str = "") -> dict[str, str]:
    """Short codes for long row names, in order of first appearance: ``A``, ``B``, ... (``Z``, ``AA``, ...).

    With a ``prefix`` the codes are numbered instead: ``S1``, ``S2``, ... for ``prefix="S"``. Show them in
    a table through ``text(header, names=codes)`` and say what they stand for with :func:`legend`.
    """
    def letters(index: int) -> str:
        code = ""
        index += 1
        while index:
            index, rest = divmod(index - 1, 26)
            code = chr(ord("A") + rest) + code
        return code

    unique = list(dict.fromkeys(str(n) for n in names))
    return {name: f"{prefix}{i + 1}" if prefix else letters(i) for i, name in enumerate(unique)}


def legend(labels: Mapping[str, str], caption: str | None = None, code: str = "label",
           meaning: str = "stands for") -> Styler:
    """The table that says what each short label stands for: ``labels`` maps full names to codes."""
    frame = pd.DataFrame({"code": list(labels.values()), "name": list(labels.keys())})
    return table(frame, {"code": text(code), "name": text(meaning)}, caption)


def split_table(frame: pd.DataFrame, columns: Mapping[str, Column | str], keys: Sequence[str],
                parts: Sequence[Sequence[str]], captions: Sequence[str | None] | None = None,
                ci: CiPlacement = "inline") -> list[Styler]:
    """One table per part of a wide table, each with the ``keys`` columns first: show with ``display(*tables)``.

    ``columns`` describes every column as in :func:`table`; ``parts`` lists the other columns of each
    table (split by the question each part answers); ``captions`` gives one caption per part.
    """
    captions = list(captions) if captions is not None else [None] * len(parts)
    if len(captions) != len(parts):
        raise ValueError(f"{len(parts)} parts but {len(captions)} captions")
    unknown = [c for c in [*keys, *(c for part in parts for c in part)] if c not in columns]
    if unknown:
        raise KeyError(f"columns {unknown} are not described in columns")
    return [table(frame, {c: columns[c] for c in [*keys, *part]}, caption, ci=ci)
            for part, caption in zip(parts, captions)]


def _group_columns(groups: Sequence[str] | Mapping[str, Column | str]) -> dict[str, Column | str]:
    if isinstance(groups, Mapping):
        return dict(groups)
    return {name: GROUP_COLUMNS.get(name, text(name)) for name in groups}


def volume_bias(bias: pd.DataFrame, groups: Sequence[str] | Mapping[str, Column | str] = ("task", "loss"),
                       unit: str | None = "ml", caption: str | None = None, ci: CiPlacement = "inline",
                       layout: Layout = "column") -> Styler:
    """A :func:`volbias.analysis.tables.volume_bias_table` for readers.

    Columns: the groups, the number of cases, the mean reference volume (in ``unit``), and the
    relative bias of the soft and the thresholded volume in percent with 95% CIs. ``ci``, ``layout``:
    as in :func:`table`.
    """
    columns = _group_columns(groups)
    columns.update({
        "n": count("cases"),
        "mean_reference": number("mean reference volume", unit=unit),
        "bias_soft": estimate("bias of the soft volume", as_percent=True),
        "bias_hard": estimate("bias of the thresholded volume", as_percent=True),
    })
    return table(bias, columns, caption, ci=ci, layout=layout)


SUMMARY_METRICS: dict[str, Column] = {
    "dice": estimate("Dice"),
    "err_soft": estimate("soft volume error", signed=True),
    "abs_err_soft": estimate("soft |volume error|"),
    "err_hard": estimate("thresholded volume error", signed=True),
    "abs_err_hard": estimate("thresholded |volume error|"),
    "rel_err_soft": estimate("relative soft volume error", as_percent=True),
    "rel_err_hard": estimate("relative thresholded volume error", as_percent=True),
}
"""Display of the metrics of :func:`volbias.analysis.tables.summarize` (volume errors take the unit)."""


def summary(long: pd.DataFrame, groups: Sequence[str] | Mapping[str, Column | str] = ("task", "loss"),
                   metrics: Sequence[str] | Mapping[str, Column] | None = None, unit: str | None = "ml",
                   caption: str | None = None, ci: CiPlacement = "inline", layout: Layout = "column") -> Styler:
    """The ``long`` table of :func:`volbias.analysis.tables.summarize`, one row per group: mean [95% CI] per metric.

    ``metrics`` defaults to those present in ``long``, in the order of :data:`SUMMARY_METRICS`;
    absolute volume errors get ``unit`` in their headers. ``ci``, ``layout``: as in :func:`table`.
    """
    group_columns = _group_columns(groups)
    keys = list(group_columns)
    present = list(dict.fromkeys(long["metric"]))
    if metrics is None:
        metrics = [m for m in SUMMARY_METRICS if m in present] + [m for m in present if m not in SUMMARY_METRICS]
    if not isinstance(metrics, Mapping):
        metrics = {m: SUMMARY_METRICS.get(m, estimate(m)) for m in metrics}
    absent = [m for m in metrics if m not in present]
    if absent:
        raise KeyError(f"metrics {absent} not in the summary (it has {present})")
    rows = []
    for key, group in long.groupby(keys, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        by_metric = group.set_index("metric")
        row = dict(zip(keys, key))
        row["n"] = int(by_metric["n"].max())
        for metric in metrics:
            row.update({metric: by_metric.loc[metric, "mean"], f"{metric}_ci_low": by_metric.loc[metric, "ci_low"],
                        f"{metric}_ci_high": by_metric.loc[metric, "ci_high"]})
        rows.append(row)
    columns: dict[str, Column | str] = {**group_columns, "n": count("cases")}
    for metric, column in metrics.items():
        is_volume = metric.startswith(("err_", "abs_err_")) and column.unit is None
        columns[metric] = replace(column, unit=unit) if is_volume else column
    return table(pd.DataFrame(rows), columns, caption, ci=ci, layout=layout)


def paired_test(tests: pd.DataFrame, groups: Sequence[str] | Mapping[str, Column | str] = ("task",),
                       unit: str | None = None, as_percent: bool = False, caption: str | None = None,
                       ci: CiPlacement = "inline", layout: Layout = "column") -> Styler:
    """A :func:`volbias.analysis.tables.paired_test` table: both means, the paired difference [95% CI], p.

    The losses compared are named in the headers (``mean CE``, ``SD - CE``); the metric of each row
    gets its own column when the table holds several metrics. ``as_percent``: the metric is a fraction.
    ``ci``, ``layout``: as in :func:`table`.
    """
    a, b = (loss_label(str(tests[c].iloc[0])) for c in ("a", "b")) if len(tests) else ("a", "b")
    columns = _group_columns(groups)
    if tests["metric"].nunique() > 1:
        columns["metric"] = text("metric", {m: c.header for m, c in SUMMARY_METRICS.items()})
    mean = percent if as_percent else number
    columns.update({
        "n_pairs": count("pairs"),
        "mean_a": replace(mean(f"mean {a}"), unit=unit, signed=False),
        "mean_b": replace(mean(f"mean {b}"), unit=unit, signed=False),
        "mean_diff": estimate(f"{b} - {a}", low="diff_ci_low", high="diff_ci_high", unit=unit,
                              as_percent=as_percent, signed=True),
        "p_value": p_value("p (Wilcoxon)"),
    })
    return table(tests, columns, caption, ci=ci, layout=layout)
