"""`inspect`'s output: one JSON object (with --json or in a pipe), or a table and a small chart
of arrivals over time on a terminal (rich, on stdout: the table is the product there).

Most of a table's text comes from the file (event types, error messages, event names): it
goes into rich as plain `Text`, never markup, without escape sequences, and with the key
masked before rich may fold it across two lines where no mask could find it.
"""

from __future__ import annotations

from typing import Any

from mavera_cli.inspect import InspectReport
from mavera_cli.jsonout import json_line
from mavera_cli.printable import terminal_safe
from mavera_cli.redact import Redactor
from mavera_cli.render import OutputSink
from mavera_cli.timing import TimingFigures

CHART_WIDTH = 60
_BARS = " ▁▂▃▄▅▆▇█"
_LISTED = 5  # entries of a list shown in the table (JSON has them all)


def write_report(
    report: InspectReport, sink: OutputSink, *, as_json: bool, secret: str | None = None
) -> None:
    """One compact JSON line, or the table (the sink masks `secret` in either)."""
    if as_json:
        sink.write(json_line(report.as_json()))  # (a path may not be UTF-8)
        sink.end()
        return
    sink.write(table_text(report, secret).encode())
    sink.end()


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f} s"


def _listed(items: list[Any], describe: Any) -> str:
    if not items:
        return "none"
    shown = ", ".join(describe(item) for item in items[:_LISTED])
    more = len(items) - _LISTED
    return f"{len(items)}: {shown}" + (f", … {more} more" if more > 0 else "")


def table_text(report: InspectReport, secret: str | None = None) -> str:
    """The report as a terminal table (with colour), and the arrivals chart of a trace."""
    import io

    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    redactor = Redactor(secret)

    def shown(value: object) -> Text:
        # Control characters first: removing one could join the key's two halves.
        return Text(redactor.text(terminal_safe(str(value))))

    data = report.as_json()
    text = io.StringIO()
    console = Console(file=text, force_terminal=True, highlight=False, width=100)
    outcome = data["outcome"]
    table = Table(title=shown(f"{report.path} ({report.source})"), show_header=False, box=None)

    def row(*cells: object) -> None:
        table.add_row(*(shown(cell) for cell in cells))

    table.add_column(style="bold")
    table.add_column(overflow="fold")
    ending = outcome["terminal_event"] or "no terminal event"
    code = outcome["exit_code"]
    row("outcome", f"{ending}: exit {code}" + (f" ({outcome['error']})" if code else ""))
    if outcome["message"]:
        row("", outcome["message"])
    if report.source == "trace" and data["recorded"] is not None:
        row("recorded", f"exit {data['recorded']['exit_code']}")
    row("bytes", f"{report.bytes:,}")
    row(
        "events",
        f"{report.events:,}"
        + (f" ({report.events_after_end} after the end)" if report.events_after_end else ""),
    )
    for kind, count in report.events_by_type.most_common():
        row("", f"{count:>8,}  {kind}")
    row("[DONE]", "yes" if report.done_marker else "no")
    sequence = report.sequence
    if sequence.present:
        row(
            "sequence",
            f"{sequence.first}…{sequence.last}; gaps "
            + _listed(sequence.gaps, lambda gap: f"{gap['after']}→{gap['next']}")
            + "; repeats "
            + _listed(sequence.repeats, lambda item: str(item["number"]))
            + "; out of order "
            + _listed(sequence.out_of_order, lambda item: str(item["number"])),
        )
    else:
        row("sequence", "no sequence_number")
    row(
        "unknown types",
        _listed(list(report.unknown_types.items()), lambda item: f"{item[0]} ×{item[1]}"),
    )
    row(
        "malformed",
        _listed(report.malformed_lines, lambda item: f"#{item['event']} {item['data']!r}"),
    )
    row(
        "name mismatches",
        _listed(
            report.name_mismatches,
            lambda item: f"#{item['event']} event: {item['event_name']} / type {item['type']}",
        ),
    )
    usage = report.usage
    row(
        "usage",
        "none"
        if usage is None
        else ", ".join(
            f"{name} {value}" for name, value in usage.items() if not isinstance(value, dict)
        ),
    )
    timing = report.timing
    if timing is not None:
        figures = data["timing"]
        row("to headers", _seconds(figures["to_headers"]))
        row("to first event", _seconds(figures["to_first_event"]))
        row("to first delta", _seconds(figures["to_first_delta"]))
        row("total", _seconds(figures["total"]))
        rate = figures["deltas_per_s"]
        row(
            "rate",
            "-" if rate is None else f"{rate:,.1f} deltas/s, {figures['chars_per_s']:,.1f} chars/s",
        )
        gaps = figures["gaps"]
        row("gaps", "  ".join(f"{name} {_seconds(value)}" for name, value in gaps.items()))
        for stall in figures["longest_stalls"]:
            row(
                "stall",
                f"{stall['seconds']:.3f} s after event {stall['after_event']} "
                f"({stall['event_type']}) at {stall['at']:.3f} s",
            )
    for note in report.notes:
        row("note", note)
    console.print(table)
    if timing is not None and timing.arrivals:
        console.print(arrivals_chart(timing), markup=False)
    return text.getvalue()


def arrivals_chart(figures: TimingFigures, width: int = CHART_WIDTH) -> str:
    """Events over time as one row of bars (a column per 1/width of the run), with its axis."""
    end = max(figures.total or 0.0, max(at for at, _ in figures.arrivals))
    counts = [0] * width
    for at, count in figures.arrivals:
        # (A trace's times are checked and in order; the chart holds whatever it is given.)
        column = min(width - 1, max(0, int(at / end * width))) if end > 0 else 0
        counts[column] += count
    top = max(counts)
    bars = "".join(
        _BARS[0] if not count else _BARS[max(1, round(count / top * (len(_BARS) - 1)))]
        for count in counts
    )
    return f"arrivals  |{bars}|\n          0 s{' ' * (width - 8)}{end:.2f} s"
