"""`json`: structured output. Checks the flags and the schema, streams, then checks the JSON."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mavera_cli.errors import UsageError
from mavera_cli.invocation import invocation
from mavera_cli.options import RequestOptions
from mavera_cli.payload import build_payload
from mavera_cli.render.choose import OutputMode, renderer_for
from mavera_cli.reporting import Reporter
from mavera_cli.schema import JSON_OBJECT_FORMAT, json_output_parser, load_schema


@dataclass(frozen=True)
class JsonRequest:
    """The flags only `json` has."""

    schema: str | None = None
    schema_name: str | None = None
    strict: bool = True
    pretty: bool | None = None
    partial: bool = False
    events: bool = False

    def check(self) -> None:
        """Flag combinations that make no sense, before anything is sent."""
        if self.events and (self.partial or self.pretty is not None):
            raise UsageError("--events writes raw events: leave out --partial/--pretty/--compact")
        if self.partial and self.pretty:
            raise UsageError("--partial writes NDJSON, one compact line per object: drop --pretty")
        if self.schema is None and self.schema_name is not None:
            raise UsageError("--schema-name needs --schema")

    @property
    def output_mode(self) -> OutputMode:
        if self.events:
            return OutputMode.events
        return OutputMode.json_partial if self.partial else OutputMode.json


def run_json(
    reporter: Reporter, opts: RequestOptions, words: Sequence[str], request: JsonRequest
) -> None:
    """Stream a structured answer; stdout gets JSON only once it is complete and valid."""
    ndjson = request.events or request.partial
    with invocation(reporter, opts, ndjson=ndjson) as inv:
        pretty = inv.stdout.isatty() if request.pretty is None else request.pretty
        renderer = inv.show(
            renderer_for(
                request.output_mode,
                inv.sink,
                inv.terminal,
                final_newline=not opts.no_newline,
                pretty=pretty,
            )
        )
        request.check()
        schema = load_schema(request.schema, request.schema_name) if request.schema else None
        text_format = schema.text_format(request.strict) if schema else dict(JSON_OBJECT_FORMAT)
        # Checked whatever the renderer: `--events` exits 11 on bad JSON too.
        parse_output = json_output_parser(schema.document if schema else None)
        prompt = inv.read_prompt(words)
        with inv.connect() as api:
            payload = build_payload(api.settings, prompt, stream=True, text_format=text_format)
            api.stream(payload, renderer, parse_output)
