"""Parse what TFLite's `benchmark_model` prints: timings, per-run statistics, memory
footprint, delegation and the op-profile tables (text or CSV form).

Handled forms (each line may carry an ``INFO: `` prefix, and numbers may be printed in C++
stream notation such as ``1.23457e+06``):

* current: ``Inference timings in us: Init: X, First inference: Y, Warmup (avg): Z, Inference (avg): W``
* older:   ``Average inference timings in us: Warmup: Z, Init: X, Inference: W``
* ``Memory footprint delta from the start of the tool (MB): init=A overall=B``
* ``Overall peak memory footprint (MB) via periodic monitoring: P``
* per-run statistics ``count=N first=.. curr=.. min=.. max=.. avg=.. std=..`` (or ``count=N curr=..``)
* op profile: ``==== Run Order ====`` and ``==== Summary by node type ====`` tables.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from ..errors import FadError

NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|[-+]?nan|[-+]?inf"
LOG_PREFIX = re.compile(r"^(?:INFO|WARN|WARNING|ERROR|VERBOSE): ")
CURRENT_TIMINGS = re.compile(
    rf"Inference timings in us: Init: (?P<init>{NUMBER}), First inference: (?P<first>{NUMBER}), "
    rf"Warmup \(avg\): (?P<warmup>{NUMBER}), Inference \(avg\): (?P<inference>{NUMBER})")
OLD_TIMINGS = re.compile(
    rf"Average inference timings in us: Warmup: (?P<warmup>{NUMBER}), Init: (?P<init>{NUMBER}), "
    rf"Inference: (?P<inference>{NUMBER})")
MEMORY_DELTA = re.compile(
    rf"Memory footprint delta from the start of the tool \(MB\): init=(?P<init>{NUMBER}) overall=(?P<overall>{NUMBER})")
PEAK_MEMORY = re.compile(rf"Overall peak memory footprint \(MB\) via periodic monitoring: (?P<peak>{NUMBER})")
RUN_STATS = re.compile(r"^count=\d+")
STAT_FIELD = re.compile(rf"(\w+)=({NUMBER})")
DELEGATION = re.compile(r"Explicitly applied (?P<name>.+?) delegate, and the model graph will be "
                        r"(?P<how>completely|partially) executed by the delegate(?: w/ (?P<kernels>\d+) delegate kernels)?")
NOT_DELEGATED = re.compile(r"Though (?P<name>.+?) delegate is explicitly applied, the model graph will not be")
TABLE_TITLE = re.compile(r"^=+ (?P<title>.+?) =+$")
RUN_PROFILE_HEADER = "Operator-wise Profiling Info for Regular Benchmark Runs:"
US_PER_MS = 1000.0

# Table header names (text form "[avg ms]", CSV form "avg_ms") -> one key.
COLUMN_KEYS = {"nodetype": "type", "start": "start_ms", "first": "first_ms", "avgms": "avg_ms", "%": "pct",
               "avg%": "pct", "cdf%": "cdf_pct", "memkb": "mem_kb", "timescalled": "times_called",
               "name": "name", "count": "count"}


@dataclass
class BenchmarkOutput:
    """Everything one `benchmark_model` invocation reported (times in ms, memory in MB)."""

    init_ms: float
    inference_avg_ms: float
    warmup_avg_ms: float | None = None
    first_inference_ms: float | None = None
    run_stats_ms: dict = field(default_factory=dict)  # count, min, max, avg, std of the regular runs
    memory_mb: dict = field(default_factory=dict)  # init, overall, peak
    delegation: str | None = None
    run_order: list = field(default_factory=list)
    by_node_type: list = field(default_factory=list)
    format: str = "current"


def strip_prefixes(text: str) -> list[str]:
    return [LOG_PREFIX.sub("", line.rstrip("\r")) for line in text.splitlines()]


def to_float(s: str) -> float | None:
    """A C++-printed number; nan (an empty statistic) becomes None."""
    value = float(s)
    return None if math.isnan(value) else value


def us_to_ms(s: str) -> float | None:
    value = to_float(s)
    return None if value is None else value / US_PER_MS


def parse_timings(lines: list[str]) -> dict:
    for line in reversed(lines):  # the summary comes last
        m = CURRENT_TIMINGS.search(line)
        if m:
            return {"format": "current", "init_ms": us_to_ms(m["init"]), "first_inference_ms": us_to_ms(m["first"]),
                    "warmup_avg_ms": us_to_ms(m["warmup"]), "inference_avg_ms": us_to_ms(m["inference"])}
        m = OLD_TIMINGS.search(line)
        if m:
            return {"format": "old", "init_ms": us_to_ms(m["init"]), "first_inference_ms": None,
                    "warmup_avg_ms": us_to_ms(m["warmup"]), "inference_avg_ms": us_to_ms(m["inference"])}
    return {}


def parse_run_stats(lines: list[str]) -> dict:
    """The statistics of the regular runs: the last bare ``count=...`` line (warm-up comes first)."""
    stats = [ln for ln in lines if RUN_STATS.match(ln.strip())]
    if not stats:
        return {}
    fields = dict(STAT_FIELD.findall(stats[-1]))
    out = {"count": int(fields["count"])}
    if "avg" not in fields and "curr" in fields:  # "count=N curr=X(all same)": every run took X
        fields.update({k: fields["curr"] for k in ("min", "max", "avg")}, std="0")
    for key in ("first", "min", "max", "avg", "std"):
        if key in fields:
            out[f"{key}_ms"] = us_to_ms(fields[key])
    return out


def parse_memory(lines: list[str]) -> dict:
    memory = {}
    for line in lines:
        m = MEMORY_DELTA.search(line)
        if m:
            memory.update(init=to_float(m["init"]), overall=to_float(m["overall"]))
        m = PEAK_MEMORY.search(line)
        if m:
            memory["peak"] = to_float(m["peak"])
    return memory


def parse_delegation(lines: list[str]) -> str | None:
    for line in lines:
        m = DELEGATION.search(line)
        if m:
            kernels = f" ({m['kernels']} delegate kernels)" if m["kernels"] else ""
            return f"{m['name']}: {'full' if m['how'] == 'completely' else 'partial'}{kernels}"
        m = NOT_DELEGATED.search(line)
        if m:
            return f"{m['name']}: none (ran on the CPU)"
    return None


def column_key(header: str) -> str:
    name = re.sub(r"[\s_\[\]]", "", header).lower()
    return COLUMN_KEYS.get(name, name)


def split_row(line: str, csv: bool) -> list[str]:
    if csv:
        return [c.strip() for c in line.split(", ")]
    return [c.strip() for c in line.strip("\n").split("\t")[1:]]  # text rows start with a tab


def table_value(key: str, cell: str):
    if key in ("type", "name"):
        return cell.strip("[]")
    cell = cell.rstrip("%")
    try:
        number = float(cell)
    except ValueError:
        raise FadError(f"benchmark_model op profile: cannot read {cell!r} in column {key!r}") from None
    return int(number) if key in ("count", "times_called") else number


def parse_tables(lines: list[str]) -> dict[str, list[dict]]:
    """Every ``==== Title ====`` table (text or CSV form) -> list of row dicts, by title."""
    tables, i = {}, 0
    while i < len(lines):
        m = TABLE_TITLE.match(lines[i].strip())
        if not m or i + 1 >= len(lines):
            i += 1
            continue
        header = lines[i + 1]
        csv = "\t" not in header
        keys = [column_key(h) for h in (header.split(",") if csv else header.split("\t")[1:])]
        rows, i = [], i + 2
        while i < len(lines) and lines[i].strip() and not TABLE_TITLE.match(lines[i].strip()):
            cells = split_row(lines[i], csv)
            if len(cells) < len(keys):  # "Number of nodes executed: N" and other trailers end a table
                break
            rows.append({k: table_value(k, c) for k, c in zip(keys, cells)})
            i += 1
        tables.setdefault(m["title"], rows)  # keep the first of each title in the section given
    return tables


def parse_op_profile(text: str) -> tuple[list, list]:
    """(run order, summary by node type) of the regular runs, from stdout or the CSV file."""
    lines = strip_prefixes(text)
    # Newer tools print the initialization profile first; the regular runs follow this header.
    for i, line in enumerate(lines):
        if line.strip() == RUN_PROFILE_HEADER:
            lines = lines[i + 1:]
            break
    tables = parse_tables(lines)
    return tables.get("Run Order", []), tables.get("Summary by node type", [])


def tail(text: str, n: int = 5) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return " | ".join(lines[-n:])[:600]


def parse_benchmark_output(text: str) -> BenchmarkOutput:
    """Parse one invocation's combined stdout+stderr; output without timings is an error."""
    lines = strip_prefixes(text)
    timings = parse_timings(lines)
    if not timings or timings["inference_avg_ms"] is None:
        raise FadError(f"benchmark_model printed no inference timings (garbled or failed run): {tail(text) or 'no output'}")
    run_order, by_type = parse_op_profile(text)
    return BenchmarkOutput(
        init_ms=timings["init_ms"],
        inference_avg_ms=timings["inference_avg_ms"],
        warmup_avg_ms=timings["warmup_avg_ms"],
        first_inference_ms=timings["first_inference_ms"],
        run_stats_ms=parse_run_stats(lines),
        memory_mb=parse_memory(lines),
        delegation=parse_delegation(lines),
        run_order=run_order,
        by_node_type=by_type,
        format=timings["format"],
    )
