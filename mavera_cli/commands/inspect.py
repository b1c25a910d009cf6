"""`mavera inspect FILE`: what a trace or a raw capture holds and how its stream ended.

(No `from __future__ import annotations`: Typer would eval every annotation string at each
start.)
"""

from typing import Annotated

import typer

from mavera_cli.options import DiagnosticOptions
from mavera_cli.typer_options import diagnostic_options, reporter_of


@diagnostic_options
def inspect(
    ctx: typer.Context,
    path: Annotated[
        str,
        typer.Argument(
            metavar="FILE", help="A --trace file or a --save-raw capture; `-` is stdin."
        ),
    ],
    as_json: Annotated[
        bool,
        typer.Option("--json", help="One JSON object (the default when stdout is not a terminal)."),
    ] = False,
    *,
    diag: DiagnosticOptions,
) -> int:
    """Report what a trace or raw capture holds: outcome, events, sequence, usage, timing.

    The exit code is the one the stream would have produced (what `replay` gives), so
    `mavera inspect run.trace && …` works. From a trace also: time to headers, first event
    and first delta, rates, inter-event gap percentiles and the longest stalls. A table on
    a terminal; one JSON object with --json or in a pipe.

    Examples:

    \b
      mavera stream --trace run.trace "hi" ; mavera inspect run.trace
      mavera inspect --json run.sse | jq .events_by_type
      mavera inspect run.trace | jq '.timing.longest_stalls[0]'
    """
    from mavera_cli.inspect import inspect_file
    from mavera_cli.invocation import invocation
    from mavera_cli.options import RequestOptions
    from mavera_cli.render.inspect import write_report

    # The settings, for the key: a recording may hold it (echoed by a server), and what
    # inspect writes masks it as the live commands do.
    with invocation(reporter_of(ctx), RequestOptions.diagnostics_only(diag)) as inv:
        report = inspect_file(path)
        as_table = not as_json and inv.stdout.isatty()
        write_report(report, inv.sink, as_json=not as_table, secret=inv.settings.api_key)
    return report.exit_code
