"""What a PromQL expression reads: metric names and the label names it selects or groups by.

For checking that dashboards and alert rules name only what /metrics exports.
Not a PromQL parser: it takes the expression apart with regular expressions,
which is enough for the identifiers. String literals, range and subquery
brackets and Grafana variables are dropped (Grafana's ``label_values(selector,
label)`` reads the label from the selector); the label names of each ``{...}``
selector and of each ``by``/``without``/``on``/``ignoring``/``group_*`` list
are collected; every identifier left that is no function, aggregation or
keyword is a metric name. A call of a function this module does not know
raises, so that a new function cannot pass for a metric.
"""

import re
from dataclasses import dataclass, field

FUNCTIONS = frozenset("""
    abs absent absent_over_time acos acosh asin asinh atan atanh avg_over_time ceil changes clamp clamp_max
    clamp_min cos cosh count_over_time day_of_month day_of_week day_of_year days_in_month deg delta deriv exp
    floor histogram_quantile holt_winters hour idelta increase irate label_join label_replace last_over_time ln
    log10 log2 max_over_time min_over_time minute month pi predict_linear present_over_time quantile_over_time
    rad rate resets round scalar sgn sin sinh sort sort_desc sqrt stddev_over_time stdvar_over_time sum_over_time
    tan tanh time timestamp vector year
    label_values query_result
""".split())
"""PromQL's functions, and Grafana's template-variable query functions (label_values, query_result)."""
AGGREGATIONS = frozenset("sum min max avg group stddev stdvar count count_values bottomk topk quantile".split())
KEYWORDS = frozenset("by without on ignoring group_left group_right bool offset and or unless atan2 inf nan".split())

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_BRACKETS = re.compile(r"\[[^\]]*\]")
_SELECTOR = re.compile(r"([A-Za-z_:][\w:]*)?\s*\{([^}]*)\}")
_MATCHER_LABEL = re.compile(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_IDENTIFIER = re.compile(r"(?<![\w$.])([A-Za-z_:][\w:]*)(\s*\()?")
_VARIABLE = re.compile(r"\$\{?\w+\}?")
_LABEL_VALUES = re.compile(r"^\s*label_values\((.*),\s*([A-Za-z_]\w*)\s*\)\s*$", re.S)
"""Grafana's ``label_values(selector, label)``: the label is read from the selector's series."""


@dataclass
class Reads:
    selectors: list[tuple[str, frozenset[str]]] = field(default_factory=list)
    """(metric name, label names its {...} matchers name), once per place it is read."""
    grouping: set[str] = field(default_factory=set)
    """Label names of by/without/on/ignoring/group_left/group_right lists."""

    @property
    def metrics(self) -> set[str]:
        return {name for name, _ in self.selectors}


def reads(expr: str) -> Reads:
    found = Reads()
    if m := _LABEL_VALUES.match(expr):
        expr = m.group(1)
        found.grouping.add(m.group(2))
    text = _BRACKETS.sub(" ", _STRING.sub('""', expr))
    text = _VARIABLE.sub(" ", text)
    for labels in _GROUPING.findall(text):
        found.grouping |= {label.strip() for label in labels.split(",") if label.strip()}
    text = _GROUPING.sub(" ", text)

    def selector(match: re.Match) -> str:
        labels = frozenset(_MATCHER_LABEL.findall(match.group(2)))
        if match.group(1) and match.group(1) not in KEYWORDS | AGGREGATIONS | FUNCTIONS:
            found.selectors.append((match.group(1), labels))
            return " "
        return f"{match.group(1) or ''} "

    text = _SELECTOR.sub(selector, text)
    for name, call in _IDENTIFIER.findall(text):
        if name in KEYWORDS or name in AGGREGATIONS or name in FUNCTIONS:
            continue
        if call:
            raise ValueError(f"{name}() is no PromQL function this check knows: {expr}")
        found.selectors.append((name, frozenset()))
    return found
