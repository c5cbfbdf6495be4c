"""Assertions shared by many tests: the gateway's JSON error answers."""

import json

import httpx

from tests.support.rawhttp import Response


def _parts(response: httpx.Response | Response) -> tuple[int, str, bytes, str | None]:
    if isinstance(response, httpx.Response):
        return (response.status_code, response.headers.get("content-type", ""), response.content,
                response.headers.get("x-request-id"))
    return response.status, response.header("content-type") or "", response.body, response.header("x-request-id")


def assert_json_error(response: httpx.Response | Response, status: int) -> dict:
    """``response`` is a gateway error: ``status``, JSON ``{"error", "status", "request_id"}``."""
    got_status, content_type, body, request_id_header = _parts(response)
    assert got_status == status, f"expected {status}, got {got_status}: {body[:300]!r}"
    assert content_type.split(";")[0].strip().lower() == "application/json", content_type
    doc = json.loads(body)
    assert isinstance(doc.get("error"), str) and doc["error"], doc
    assert doc.get("status") == status, doc
    assert isinstance(doc.get("request_id"), str), doc
    if request_id_header is not None:
        assert doc["request_id"] == request_id_header, (doc, request_id_header)
    return doc
