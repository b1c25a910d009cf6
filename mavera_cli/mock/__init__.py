"""The built-in fake Mavera server (`mavera mock`, `--mock`): stdlib HTTP plus orjson only."""

from mavera_cli.mock.faults import Fault, FaultPlan, parse_fault
from mavera_cli.mock.server import MockServer

__all__ = ["Fault", "FaultPlan", "MockServer", "parse_fault"]
