"""The Prometheus text exposition format (version 0.0.4) of summed series."""

from fastgate.observe.metrics import FAMILIES, HISTOGRAM, SUM, buckets_of

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
_LE = {family: [repr(bound) for bound in buckets_of(family)] + ["+Inf"]
       for family, (kind, _) in FAMILIES.items() if kind == HISTOGRAM}
"""The ``le`` label values of each histogram family."""


def render(totals: dict) -> bytes:
    """Every family, with HELP and TYPE, even when it has no series yet."""
    by_family: dict[str, dict[str, dict[int, float]]] = {name: {} for name in FAMILIES}
    for (family, labels, part), value in totals.items():
        series = by_family.get(family)
        if series is not None:
            series.setdefault(labels, {})[part] = value
    lines: list[str] = []
    for family, series in by_family.items():
        kind, help_text = FAMILIES[family]
        lines.append(f"# HELP {family} {help_text}")
        lines.append(f"# TYPE {family} {kind}")
        if kind == HISTOGRAM:
            for labels, parts in series.items():
                _histogram(lines, family, labels, parts)
        else:
            for labels, parts in series.items():
                lines.append(f"{family}{{{labels}}} {_number(parts[0])}" if labels else f"{family} {_number(parts[0])}")
    lines.append("")
    return "\n".join(lines).encode()


def _histogram(lines: list[str], family: str, labels: str, parts: dict[int, float]) -> None:
    bucket = f'{family}_bucket{{{labels},le="' if labels else f'{family}_bucket{{le="'
    cumulative = 0
    for part, le in enumerate(_LE[family]):
        cumulative += int(parts.get(part, 0))
        lines.append(f'{bucket}{le}"}} {cumulative}')
    braces = f"{{{labels}}}" if labels else ""
    lines.append(f"{family}_sum{braces} {_number(parts.get(SUM, 0.0))}")
    lines.append(f"{family}_count{braces} {cumulative}")


def _number(value: float) -> str:
    return str(int(value)) if value.is_integer() else repr(value)


def quantiles(parts: dict[int, float], qs: tuple[float, ...], bounds: tuple[float, ...]) -> list[float]:
    """Estimates of the quantiles ``qs`` (ascending) from the parts of a histogram whose bucket
    upper bounds are ``bounds`` (``buckets_of(family)``), interpolated within their bucket as
    PromQL's histogram_quantile does; a rank in the +Inf bucket gives the last bound; 0.0 when
    there is no observation."""
    counts = [parts.get(i, 0.0) for i in range(len(bounds) + 1)]
    total = sum(counts)
    if not total:
        return [0.0] * len(qs)
    found = []
    seen = lower = 0.0
    bucket = 0
    for q in qs:
        rank = q * total
        while bucket < len(counts) and (seen + counts[bucket] < rank or not counts[bucket]):
            seen += counts[bucket]
            lower = bounds[bucket] if bucket < len(bounds) else lower
            bucket += 1
        if bucket >= len(bounds):
            found.append(bounds[-1])
        else:
            upper = bounds[bucket]
            found.append(lower + (upper - lower) * (rank - seen) / counts[bucket])
    return found
