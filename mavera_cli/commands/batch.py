"""`batch` (many prompts, concurrently, resumable) and `usage` (the account's credits).

`batch` takes the request options of `stream` except the ones about one prompt (-f, -n,
--save-raw) and `-p` (here repeatable: fan-out); its job is `batch.runner.run_batch`.
(No `from __future__ import annotations`: Typer would eval every annotation string at each
start.)
"""

from enum import StrEnum
from typing import Annotated

import typer

from mavera_cli.options import RequestOptions
from mavera_cli.typer_options import (
    account_options,
    reporter_of,
    request_options_without,
)

# Options about one prompt have no meaning here; -p is batch's own (repeatable: fan-out).
batch_options = request_options_without("files", "persona", "save_raw", "no_newline")


class BatchAs(StrEnum):
    text = "text"
    json = "json"
    tools = "tools"


@batch_options
def batch(
    ctx: typer.Context,
    path: Annotated[
        str | None,
        typer.Argument(
            metavar="[FILE|-]",
            help='JSONL items, one per line ({"id", "input", "persona_id", '
            '"instructions", "model", "schema"}; only input is required); `-` or a pipe '
            "is stdin.",
            show_default=False,
        ),
    ] = None,
    lines: Annotated[
        bool, typer.Option("--lines", help="Every non-empty line is a prompt's text.")
    ] = False,
    personas: Annotated[
        list[str] | None,
        typer.Option(
            "-p",
            "--persona",
            metavar="ID",
            help="persona_id to answer as; repeat it to run every item once per persona "
            "[env MAVERA_PERSONA_ID].",
        ),
    ] = None,
    concurrency: Annotated[
        int, typer.Option("-j", "--concurrency", metavar="N", help="Requests in flight at once.")
    ] = 4,
    mode: Annotated[
        BatchAs,
        typer.Option("--as", help="What each item asks for: text, json (--schema) or tools."),
    ] = BatchAs.text,
    schema: Annotated[
        str | None,
        typer.Option(
            "--schema",
            metavar="FILE|JSON",
            help="--as json: the JSON Schema answers must match (an item's own schema wins).",
        ),
    ] = None,
    functions: Annotated[
        str | None,
        typer.Option("--functions", metavar="FILE", help="--as tools: the tool definitions."),
    ] = None,
    output: Annotated[
        str | None,
        typer.Option(
            "-o",
            "--output",
            metavar="FILE",
            help="Append the results here; items already done in it are skipped (resume).",
        ),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Start -o FILE afresh instead of resuming.")
    ] = False,
    rpm: Annotated[
        int | None,
        typer.Option("--rpm", metavar="N", help="Start at most N requests a minute, evenly."),
    ] = None,
    max_credits: Annotated[
        int | None,
        typer.Option(
            "--max-credits", metavar="N", help="Start no new item once N credits are used."
        ),
    ] = None,
    *,
    opts: RequestOptions,
) -> None:
    """Run many prompts concurrently: one JSONL result line per item, as each finishes.

    Paced by the server's rate-limit headers (a 429 pauses every request); resumable: with
    -o FILE, a second run skips the items that completed and runs the rest. Exit 13 when an
    item failed or was not started; each item's own exit code is in its line.

    Examples:

      mavera batch --mock --lines prompts.txt

      mavera batch items.jsonl -j 16 -o results.jsonl

      mavera batch items.jsonl -p "$PERSONA_A" -p "$PERSONA_B" --as json --schema score.json
    """
    from mavera_cli.batch.runner import BatchRequest, ItemMode, run_batch

    request = BatchRequest(
        input=path,
        lines=lines,
        personas=tuple(personas or ()),
        concurrency=concurrency,
        mode=ItemMode(mode.value),
        schema=schema,
        functions=functions,
        output=output,
        overwrite=overwrite,
        rpm=rpm,
        max_credits=max_credits,
    )
    run_batch(reporter_of(ctx), opts, request)


@account_options
def usage(
    ctx: typer.Context,
    json_output: Annotated[
        bool,
        typer.Option(
            "--json", help="The server's JSON object on one line (the default when piped)."
        ),
    ] = False,
    *,
    opts: RequestOptions,
) -> None:
    """Show the account's credits (used, included, remaining), billing period and rate limit.

    Examples:

    \b
      mavera usage
      mavera usage | jq .credits.remaining
    """
    from mavera_cli.invocation import invocation
    from mavera_cli.render.account import render_usage

    with invocation(reporter_of(ctx), opts) as inv:
        with inv.connect() as api:
            report, body = api.call(api.client.get_usage)
        render_usage(report, body, inv.sink, as_table=not json_output and inv.stdout.isatty())
