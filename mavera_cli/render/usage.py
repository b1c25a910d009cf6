"""`--usage`: tokens and credits counted from the final response(s), told on stderr."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mavera_cli.errors import MaveraError
from mavera_cli.events import TERMINAL_EVENTS, ResponseAccumulator, ResponseEvent
from mavera_cli.render import Renderer


@dataclass
class UsageMeter:
    """Tokens and credits over every response of one command (`tools` may make several)."""

    responses: int = 0
    unreported: int = 0
    totals: dict[str, int] = field(default_factory=dict)

    def add(self, response: dict[str, Any]) -> None:
        """Count one final response object ({} when none arrived: nothing to count)."""
        if not response:
            return
        self.responses += 1
        usage = response.get("usage")
        if not isinstance(usage, dict):
            self.unreported += 1
            return
        for name in ("input_tokens", "output_tokens", "total_tokens", "credits_used"):
            value = usage.get(name)
            if isinstance(value, int) and not isinstance(value, bool):
                self.totals[name] = self.totals.get(name, 0) + value

    def summary(self) -> str | None:
        """The --usage line, or None when no response arrived."""
        if not self.responses:
            return None
        if self.unreported == self.responses:
            return "usage: not reported by the server"
        count = self.totals.get

        def shown(name: str) -> str:
            value = count(name)
            return "?" if value is None else str(value)

        credits = count("credits_used")
        text = (
            f"usage: {shown('total_tokens')} tokens ({shown('input_tokens')} input, "
            f"{shown('output_tokens')} output), {shown('credits_used')} "
            f"{'credit' if credits == 1 else 'credits'} used"
        )
        return text + (f" over {self.responses} responses" if self.responses > 1 else "")


class UsageTap(Renderer):
    """Passes every renderer call through, and counts the final response for --usage."""

    def __init__(self, renderer: Renderer, meter: UsageMeter) -> None:
        self._renderer = renderer
        self._meter = meter
        # The usage sits in the terminal event: it must arrive whole, however long.
        self.truncatable_events = renderer.truncatable_events - TERMINAL_EVENTS
        self.delta_sink = renderer.delta_sink
        self.needs_text = renderer.needs_text
        self.holds_output = renderer.holds_output

    def start(self, accumulator: ResponseAccumulator) -> None:
        self._renderer.start(accumulator)

    def on_event(self, event: ResponseEvent) -> None:
        self._renderer.on_event(event)

    def flush(self) -> None:
        self._renderer.flush()

    def finish(self, accumulator: ResponseAccumulator) -> None:
        self._meter.add(accumulator.response)
        self._renderer.finish(accumulator)

    def _fail(self, error: MaveraError, accumulator: ResponseAccumulator | None) -> None:
        if accumulator is not None:
            self._meter.add(accumulator.response)
        self._renderer.fail(error, accumulator)
