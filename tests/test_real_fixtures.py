"""Every real recorded stream, served locally in odd chunkings, gives its expected result."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.chunking import bytewise, random_splits, to_crlf, whole
from tests.conftest import (
    BUNDLED_FIXTURES,
    FIXTURES,
    needs_shared_fixtures,
    real_recordings,
    run_mavera,
)
from tests.scripted_server import DONE, ScriptedServer

MANIFEST = real_recordings()
EXIT_FOR_TERMINAL = {
    "response.completed": 0,
    "response.failed": 10,
    "response.incomplete": 10,
    "error": 10,
    None: 7,
}
CHUNKINGS = {
    "whole": lambda data: whole(data),
    "bytewise": lambda data: bytewise(data),
    "random": lambda data: random_splits(data, seed=len(data)),
    "crlf-random": lambda data: random_splits(to_crlf(data), seed=7, max_size=13),
}


def fixture_ids(entry: dict) -> str:
    return entry["file"].removesuffix(".sse")


def expected_exit(entry: dict) -> int:
    if entry["error_events"]:
        return 10
    return EXIT_FOR_TERMINAL[entry["terminal_event"]]


def reference_events(data: bytes) -> list[dict]:
    """The data JSON of each event, read with the simplest possible parser (LF-only files)."""
    events = []
    for block in data.decode().split("\n\n"):
        lines = [line[5:].lstrip(" ") for line in block.split("\n") if line.startswith("data:")]
        if lines and lines != ["[DONE]"]:
            events.append(json.loads("\n".join(lines)))
    return events


def serve(server: ScriptedServer, chunks: list[bytes]) -> None:
    def handler(exchange, wire) -> None:
        wire.head()
        wire.send_chunks(chunks)

    server.script(handler)


@needs_shared_fixtures
def test_fixtures_are_present() -> None:
    assert len(MANIFEST) >= 10, f"no fixtures found at {FIXTURES}"


def test_bundled_recordings_cover_what_must_always_be_tested() -> None:
    bundled = json.loads((BUNDLED_FIXTURES / "manifest.json").read_text())
    assert {entry["category"] for entry in bundled} >= {
        "text",
        "function_call",
        "structured_output",
        "error",
    }
    for entry in bundled:
        assert (BUNDLED_FIXTURES / entry["file"]).stat().st_size == entry["byte_length"]


@needs_shared_fixtures
def test_bundled_recordings_are_copies_of_the_shared_ones() -> None:
    shared = {
        entry["file"]: entry for entry in json.loads((FIXTURES / "manifest.json").read_text())
    }
    for entry in json.loads((BUNDLED_FIXTURES / "manifest.json").read_text()):
        assert entry == shared[entry["file"]]
        assert (BUNDLED_FIXTURES / entry["file"]).read_bytes() == (
            FIXTURES / entry["file"]
        ).read_bytes()


@pytest.mark.parametrize("chunking", list(CHUNKINGS))
@pytest.mark.parametrize("mavera_ending", [False, True], ids=["openai-eof", "mavera-done"])
@pytest.mark.parametrize("entry", MANIFEST, ids=fixture_ids)
def test_stream_prints_the_final_text(server, entry, chunking, mavera_ending) -> None:
    data = entry["path"].read_bytes() + (DONE if mavera_ending else b"")
    serve(server, CHUNKINGS[chunking](data))
    result = run_mavera(
        ["stream", "--base-url", server.base_url, "hi"], expect=expected_exit(entry)
    )
    text = entry["final_text"]
    expected = text if not text or text.endswith("\n") else text + "\n"
    assert result.stdout == expected.encode()
    assert len(server.requests) == 1
    body = server.requests[0].json()
    assert body["stream"] is True and body["input"] == "hi"


@pytest.mark.parametrize("entry", MANIFEST, ids=fixture_ids)
def test_smoke_a_real_process_streams_each_recording(server, entry) -> None:
    """The matrix above runs in this process; once per recording, a real `python -m
    mavera_cli` over a real socket, in random splits, prints the same and exits the same."""
    data = entry["path"].read_bytes() + DONE
    serve(server, random_splits(data, seed=1))
    result = run_mavera(
        ["stream", "--base-url", server.base_url, "hi"], expect=expected_exit(entry), process=True
    )
    text = entry["final_text"]
    assert result.stdout == (text if not text or text.endswith("\n") else text + "\n").encode()


@pytest.mark.parametrize("chunking", ["whole", "crlf-random", "bytewise"])
@pytest.mark.parametrize("entry", MANIFEST, ids=fixture_ids)
def test_events_reproduce_every_event(server, entry, chunking) -> None:
    data = entry["path"].read_bytes()
    serve(server, CHUNKINGS[chunking](data + DONE))
    code = expected_exit(entry)
    result = run_mavera(["stream", "--events", "--base-url", server.base_url, "hi"], expect=code)
    lines = result.stdout.decode().splitlines()
    parsed = [json.loads(line) for line in lines]
    expected = reference_events(data)
    assert len(expected) == entry["event_count"]
    if code == 0:
        assert parsed == expected
    else:
        assert parsed[:-1] == expected
        assert parsed[-1]["type"] == "mavera.error"
        assert parsed[-1]["exit_code"] == code
    # Passed through as received: each line is the original data bytes.
    if chunking == "whole":
        raw_lines = [line[6:] for line in data.split(b"\n") if line.startswith(b"data: ")]
        assert [line.encode() for line in lines[: len(raw_lines)]] == raw_lines


@pytest.mark.parametrize("entry", MANIFEST, ids=fixture_ids)
def test_replay_of_fixture_prints_what_stream_printed(server, entry, tmp_path: Path) -> None:
    data = entry["path"].read_bytes() + DONE
    serve(server, random_splits(data, seed=3))
    capture = tmp_path / "capture.sse"
    streamed = run_mavera(
        ["stream", "--save-raw", str(capture), "--base-url", server.base_url, "hi"],
        expect=expected_exit(entry),
    )
    # The bytes received, exactly: reading stops at the terminal event, so a `[DONE]` that
    # arrives in a later network read is not part of the capture.
    saved = capture.read_bytes()
    assert data.startswith(saved)
    assert len(saved) >= len(data) - len(DONE)
    replayed = run_mavera(["replay", str(capture)], expect=expected_exit(entry))
    assert replayed.stdout == streamed.stdout
    replayed_events = run_mavera(["replay", "--events", str(capture)], expect=expected_exit(entry))
    assert [json.loads(x) for x in replayed_events.stdout.splitlines()][: entry["event_count"]] == (
        reference_events(data)
    )
