"""`mavera personas` and plain JSON answers, against pytest-httpserver.

Where bytes and TCP splits matter (streams), tests use the raw-socket `ScriptedServer`; a JSON
endpoint answering whole responses is what pytest-httpserver is made for.
"""

from __future__ import annotations

import json

import pytest
from pytest_httpserver import HTTPServer

from tests.conftest import TEST_KEY, one_line_error, run_mavera

PERSONAS = [
    {"id": "clx_genz", "name": "Gen Z", "category": "Generational"},
    {"id": "clx_cfo", "name": "Finance lead", "category": "Professional"},
]


def base_url(httpserver: HTTPServer) -> str:
    return httpserver.url_for("/api/v1")


def test_lists_personas_as_json_lines_with_the_key_in_the_header(httpserver: HTTPServer) -> None:
    httpserver.expect_request(
        "/api/v1/personas",
        method="GET",
        headers={"Authorization": f"Bearer {TEST_KEY}"},
    ).respond_with_json({"object": "list", "data": PERSONAS})
    result = run_mavera(["personas", "--base-url", base_url(httpserver)])
    assert [json.loads(line) for line in result.stdout.splitlines()] == PERSONAS
    httpserver.check_assertions()


def test_a_bare_list_is_accepted_too(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/api/v1/personas").respond_with_json(PERSONAS)
    result = run_mavera(["personas", "--base-url", base_url(httpserver)])
    assert len(result.stdout.splitlines()) == 2


@pytest.mark.parametrize(
    ("status", "code"),
    [(401, 3), (403, 3), (404, 4), (422, 4)],
)
def test_error_statuses_have_their_exit_codes(
    httpserver: HTTPServer, status: int, code: int
) -> None:
    httpserver.expect_request("/api/v1/personas").respond_with_json(
        {"error": {"message": f"status {status} here", "code": "some_code"}}, status=status
    )
    result = run_mavera(["personas", "--base-url", base_url(httpserver)], expect=code)
    one_line_error(result.stderr, f"HTTP {status}", f"status {status} here")
    assert result.stdout == b""


def test_a_503_is_retried_then_answers(httpserver: HTTPServer) -> None:
    httpserver.expect_ordered_request("/api/v1/personas").respond_with_json(
        {"error": {"message": "busy"}}, status=503, headers={"Retry-After": "0"}
    )
    httpserver.expect_ordered_request("/api/v1/personas").respond_with_json({"data": PERSONAS})
    result = run_mavera(["personas", "--base-url", base_url(httpserver)])
    assert len(result.stdout.splitlines()) == 2
    assert "retry 1" in result.stderr
    assert len(httpserver.log) == 2


def test_500_after_the_retries_is_exit_8_having_asked_retries_plus_one_times(
    httpserver: HTTPServer,
) -> None:
    httpserver.expect_request("/api/v1/personas").respond_with_json(
        {"error": {"message": "down"}}, status=500, headers={"Retry-After": "0"}
    )
    run_mavera(
        ["personas", "--base-url", base_url(httpserver)], env={"MAVERA_RETRIES": "2"}, expect=8
    )
    assert len(httpserver.log) == 3


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"<html><title>Gateway</title></html>", "not JSON"),
        (b'{"object": "list"}', "no `data` array"),
    ],
)
def test_an_answer_that_is_no_persona_list_is_exit_11(
    httpserver: HTTPServer, body: bytes, needle: str
) -> None:
    httpserver.expect_request("/api/v1/personas").respond_with_data(
        body, content_type="application/json"
    )
    result = run_mavera(["personas", "--base-url", base_url(httpserver)], expect=11)
    one_line_error(result.stderr, needle)


def test_a_key_echoed_in_a_persona_name_is_masked(httpserver: HTTPServer) -> None:
    echoed = [{"id": "clx_1", "name": f"key {TEST_KEY}", "category": "x"}]
    httpserver.expect_request("/api/v1/personas").respond_with_json({"data": echoed})
    result = run_mavera(["personas", "--base-url", base_url(httpserver)])
    assert TEST_KEY.encode() not in result.stdout
    assert json.loads(result.stdout)["name"] == "key ***"
