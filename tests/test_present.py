"""Tests of volbias.analysis.present: number formats checked against independent formatting, and the
HTML tables parsed back (no index column, headers with units, values that match the frames)."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from volbias.analysis import present, tables

NUMBER = re.compile(r"[+-]?\d+(?:\.\d+)?")


class _Cells(HTMLParser):
    """Rows of header and data cells of the first table of an HTML string, and the table's attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[tuple[str, str]]] = []
        self.table_attrs: dict[str, str] = {}
        self.caption = ""
        self._cell: list[str] | None = None
        self._in_caption = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.table_attrs = {k: v or "" for k, v in attrs}
        elif tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = [tag]
        elif tag == "caption":
            self._in_caption = True

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append((self._cell[0], "".join(self._cell[1:]).strip()))
            self._cell = None
        elif tag == "caption":
            self._in_caption = False

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        elif self._in_caption:
            self.caption += data


def parse(styler) -> _Cells:  # noqa: ANN001 - a pandas Styler
    cells = _Cells()
    cells.feed(styler.to_html())
    return cells


def numbers(text: str) -> list[float]:
    return [float(x) for x in NUMBER.findall(text)]


def test_the_formats_of_the_issue() -> None:
    assert present.format_estimate(0.063, -0.020, 0.141, as_percent=True) == "+6.3 % [-2.0, +14.1]"
    assert present.format_estimate(0.873, 0.851, 0.897) == "0.873 [0.851, 0.897]"
    assert present.format_percent(0.063) == "+6.3 %"
    assert present.format_estimate(0.5, float("nan"), float("nan"), decimals=2) == "0.50"
    assert present.format_number(float("nan"), 2) == present.MISSING
    assert present.format_number(-0.0001, 2, signed=True) == "0.00"  # no "-0.00" or "+0.00"
    assert present.format_p_value(0.0004) == "< 0.001"
    assert present.format_p_value(0.0345) == "0.035"


@given(st.floats(-2, 2), st.floats(0, 1), st.floats(0, 1))
def test_percent_estimates_read_back_as_the_fractions(value: float, below: float, above: float) -> None:
    low, high = value - below, value + above
    shown = present.format_estimate(value, low, high, as_percent=True)
    parsed = numbers(shown)
    assert len(parsed) == 3
    np.testing.assert_allclose(parsed, [100 * value, 100 * low, 100 * high], atol=0.05 + 1e-9)
    for token, x in zip(NUMBER.findall(shown), (value, low, high)):
        assert token.startswith("+") == (round(100 * x, 1) > 0)


@given(st.lists(st.floats(1e-6, 1e6), min_size=1, max_size=9))
def test_auto_decimals_show_two_significant_digits(values: list[float]) -> None:
    median = float(np.median(values))

    def significant_digits(shown: str) -> int:
        return len(shown.replace(".", "").lstrip("0"))

    # brute force: round the median to two significant digits, then take the fewest decimals that show that
    # value with two digits (0.96875 -> 0.97; 9.96 -> 10; 1.0 -> 1.0; 123456 -> 120000)
    rounded = float(f"{median:.1e}")
    expected = next(d for d in range(20)
                    if round(rounded, d) == rounded and significant_digits(f"{rounded:.{d}f}") >= 2)
    assert present.auto_decimals(values) == min(expected, 4)
    assert present.auto_decimals([0.5]) == 2 and present.auto_decimals([9.96]) == 0


def test_loss_and_task_names() -> None:
    assert present.loss_name("sd") == "soft Dice (SD)"
    assert present.loss_label("ce-sd") == "CE-SD"
    assert present.loss_label("ce-dml") == "CE-DML"  # a CE-X schedule of a registered later loss
    assert present.loss_label("mystery") == "mystery"
    assert present.task_name("LIDC") == "LIDC-IDRI nodules"


def test_format_table_has_no_index_and_units_in_headers() -> None:
    frame = pd.DataFrame({"loss": ["ce", "sd"], "n": [12, 12], "volume": [10.123, 200.5],
                          "err": [1.5, -3.25], "err_ci_low": [0.5, -5.0], "err_ci_high": [2.5, -1.5]},
                         index=[7, 9])
    styler = present.table(frame, {
        "loss": present.text("loss", present.LOSS_NAMES), "n": present.count("cases"),
        "volume": present.number("mean volume", unit="ml"),
        "err": present.estimate("volume error", unit="ml", signed=True),
    }, caption="A caption.")
    cells = parse(styler)
    assert present.TABLE_CLASS in cells.table_attrs["class"]
    assert cells.caption.strip() == "A caption."
    header, *body = cells.rows
    assert [text for _, text in header] == ["loss", "cases", "mean volume (ml)", "volume error (ml)"]
    assert all(len(row) == 4 and all(kind == "td" for kind, _ in row) for row in body)  # no index cells
    assert [row[0][1] for row in body] == ["cross-entropy (CE)", "soft Dice (SD)"]
    for row, (_, source) in zip(body, frame.iterrows()):
        assert numbers(row[1][1]) == [source["n"]]
        assert numbers(row[2][1])[0] == pytest.approx(source["volume"], abs=0.5)  # 3 significant digits
        np.testing.assert_allclose(numbers(row[3][1]), source[["err", "err_ci_low", "err_ci_high"]].to_numpy(float),
                                   atol=0.05)
    with pytest.raises(KeyError, match="'dice'"):
        present.table(frame, {"dice": "Dice"})
    with pytest.raises(KeyError, match="confidence-interval"):
        present.table(frame, {"volume": present.estimate("volume")})


def _cases(n: int = 8) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    rows = []
    for loss, scale in (("ce", 1.0), ("sd", 1.2)):
        for i in range(n):
            ref = rng.uniform(10, 40)
            rows.append({"task": "LIDC", "loss": loss, "fold": 0, "seed": 0, "case_id": f"c{i}",
                         "dice": rng.uniform(0.6, 0.9), "true_volume": ref, "expected_volume": ref,
                         "pred_volume_soft": ref * scale + rng.normal(), "pred_volume_hard": ref * scale + 2,
                         "voxel_volume_ml": 1.0})
    return pd.DataFrame(rows)


def test_volume_bias_preset_shows_the_bias_in_percent() -> None:
    bias = tables.volume_bias_table(_cases(), by=("task", "loss"), n_resamples=200)
    header, *body = parse(present.volume_bias(bias, unit="pixels")).rows
    assert [text for _, text in header] == ["task", "loss", "cases", "mean reference volume (pixels)",
                                            "bias of the soft volume", "bias of the thresholded volume"]
    for row, (_, source) in zip(body, bias.iterrows()):
        assert row[0][1] == "LIDC-IDRI nodules"
        for cell, kind in ((row[4][1], "soft"), (row[5][1], "hard")):
            expected = 100 * source[[f"bias_{kind}", f"bias_{kind}_ci_low", f"bias_{kind}_ci_high"]].to_numpy(float)
            np.testing.assert_allclose(numbers(cell), expected, atol=0.05)
            assert " % [" in cell


def test_summary_preset_pivots_one_row_per_group() -> None:
    cases = _cases()
    summary = tables.summarize(cases, by=("loss",), metrics=("dice", "err_soft", "rel_err_hard"), n_resamples=200)
    header, *body = parse(present.summary(summary, groups=("loss",), unit="ml")).rows
    titles = [text for _, text in header]
    assert titles == ["loss", "cases", "Dice", "soft volume error (ml)", "relative thresholded volume error"]
    assert len(body) == 2
    for row, loss in zip(body, ("ce", "sd")):
        part = summary[summary["loss"] == loss].set_index("metric")
        assert numbers(row[1][1]) == [float((cases["loss"] == loss).sum())]
        np.testing.assert_allclose(numbers(row[2][1])[0], part.loc["dice", "mean"], atol=0.0005)
        np.testing.assert_allclose(numbers(row[4][1])[0], 100 * part.loc["rel_err_hard", "mean"], atol=0.05)
    with pytest.raises(KeyError, match="abs_err_hard"):
        present.summary(summary, groups=("loss",), metrics=("abs_err_hard",))


def test_paired_test_preset_names_the_losses() -> None:
    tests = tables.paired_test(_cases(), "dice", a="ce", b="sd", by=("task",))
    header, row = parse(present.paired_test(tests)).rows
    assert [text for _, text in header] == ["task", "pairs", "mean CE", "mean SD", "SD - CE", "p (Wilcoxon)"]
    source = tests.iloc[0]
    np.testing.assert_allclose(numbers(row[4][1]), source[["mean_diff", "diff_ci_low", "diff_ci_high"]].to_numpy(float),
                               atol=0.0005)
    assert row[5][1] == present.format_p_value(source["p_value"])


def test_short_labels_are_unique_codes_in_order_of_appearance() -> None:
    names = [f"a long group name number {k}" for k in range(30)]
    codes = present.short_labels(names + names[:3])
    assert list(codes) == names  # first appearance, duplicates once
    assert len(set(codes.values())) == len(names)

    def decode(code: str) -> int:  # bijective base 26: A = 1, Z = 26, AA = 27
        value = 0
        for letter in code:
            value = 26 * value + ord(letter) - ord("A") + 1
        return value

    assert [decode(codes[n]) for n in names] == list(range(1, len(names) + 1))
    assert present.short_labels(["x", "y"], prefix="S") == {"x": "S1", "y": "S2"}


def test_legend_says_what_each_label_stands_for() -> None:
    codes = present.short_labels(["synthetic, independent noise, sigma/R = 0.9", "LIDC, all nodules"])
    header, *body = parse(present.legend(codes, caption="Groups.")).rows
    assert [t for _, t in header] == ["label", "stands for"]
    assert {row[0][1]: row[1][1] for row in body} == {code: name for name, code in codes.items()}


def _bias_frame() -> pd.DataFrame:
    return pd.DataFrame({"group": ["g1", "g2"], "n": [10, 12], "bias": [0.063, 1.2], "bias_ci_low": [-0.02, 0.4],
                         "bias_ci_high": [0.141, 2.1], "dice": [0.81, 0.7], "dice_ci_low": [0.8, 0.69],
                         "dice_ci_high": [0.82, 0.71]})


def test_intervals_below_the_estimate_keep_the_numbers() -> None:
    frame = _bias_frame()
    columns = {"group": "group", "bias": present.estimate("bias", as_percent=True, decimals=1)}
    inline, below = (parse(present.table(frame, columns, ci=ci)).rows for ci in ("inline", "below"))
    assert "<br>[" in present.table(frame, columns, ci="below").to_html()
    assert "<br>" not in present.table(frame, columns).to_html()
    for a, b in zip(inline[1:], below[1:]):
        assert numbers(a[1][1]) == numbers(b[1][1])


def test_percent_estimates_show_the_digits_their_intervals_support() -> None:
    frame = _bias_frame()
    for rows, decimals in ((frame.iloc[:1], 1), (frame.iloc[1:], 0)):  # half-widths 8 and 85 points
        (_, row) = parse(present.table(rows, {"bias": present.estimate("bias", as_percent=True)})).rows
        shown = NUMBER.findall(row[0][1])
        assert all(len(token.partition(".")[2]) == decimals for token in shown), shown
        np.testing.assert_allclose(numbers(row[0][1]), 100 * rows[["bias", "bias_ci_low", "bias_ci_high"]].iloc[0],
                                   atol=0.5 * 10.0 ** -decimals + 1e-9)


def test_full_width_layout_only_when_asked() -> None:
    frame = _bias_frame()
    narrow = parse(present.table(frame, {"group": "group"}))
    wide = parse(present.table(frame, {"group": "group"}, layout="full-width"))
    assert present.FULL_WIDTH_CLASS not in narrow.table_attrs["class"].split()
    assert present.FULL_WIDTH_CLASS in wide.table_attrs["class"].split()
    with pytest.raises(ValueError, match="layout"):
        present.table(frame, {"group": "group"}, layout="wide")


def test_split_table_repeats_the_keys_in_every_part() -> None:
    frame = _bias_frame()
    columns = {"group": present.text("group"), "n": present.count("cases"),
               "bias": present.estimate("bias", as_percent=True), "dice": present.estimate("Dice")}
    first, second = present.split_table(frame, columns, keys=["group"], parts=[["n", "bias"], ["dice"]],
                                         captions=["Bias.", "Dice."])
    for styler, headers, caption in ((first, ["group", "cases", "bias"], "Bias."),
                                     (second, ["group", "Dice"], "Dice.")):
        cells = parse(styler)
        assert [t for _, t in cells.rows[0]] == headers and cells.caption.strip() == caption
        assert [row[0][1] for row in cells.rows[1:]] == list(frame["group"])
    with pytest.raises(ValueError, match="captions"):
        present.split_table(frame, columns, keys=["group"], parts=[["n"], ["dice"]], captions=["one"])
    with pytest.raises(KeyError, match="p_value"):
        present.split_table(frame, columns, keys=["group"], parts=[["p_value"]])


def test_presets_pass_the_layout_on() -> None:
    cases = _cases()
    bias = tables.volume_bias_table(cases, by=("task", "loss"), n_resamples=200)
    summary = tables.summarize(cases, by=("loss",), metrics=("dice",), n_resamples=200)
    tests = tables.paired_test(cases, "dice", a="ce", b="sd", by=("task",))
    stylers = [present.volume_bias(bias, ci="below", layout="full-width"),
               present.summary(summary, groups=("loss",), ci="below", layout="full-width"),
               present.paired_test(tests, ci="below", layout="full-width")]
    for styler in stylers:
        assert "<br>[" in styler.to_html()
        assert present.FULL_WIDTH_CLASS in parse(styler).table_attrs["class"].split()


def test_cell_text_is_shown_as_written() -> None:
    """A rule such as ``p < delta & q > 0`` is escaped, so the browser shows it instead of reading a tag."""
    frame = pd.DataFrame({"rule": ["yes: p <delta & q > 0"], "v": [1.0], "v_ci_low": [0.5], "v_ci_high": [2.0]})
    styler = present.table(frame, {"rule": "rule", "v": present.estimate("v")}, ci="below")
    html = styler.to_html()
    assert "yes: p &lt;delta &amp; q &gt; 0" in html and "<delta" not in html
    assert "<br>[" in html  # the interval's line break is markup, not text
    header, row = parse(styler).rows
    assert row[0][1] == "yes: p <delta & q > 0"
