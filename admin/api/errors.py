"""Every error the API answers has one JSON shape:

    {"error": {"code": "not_found", "message": "call 4f… not found", "details": []}}

FastAPI's own validation errors and unknown routes included; a database that cannot be reached
is a 503, and anything unexpected a 500 that says nothing of the code (the log has the trace).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from admin.models import ImmutableRowError

log = logging.getLogger("parley.api")

_CODES = {
    400: "bad_request",
    401: "not_authenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    500: "internal_error",
    503: "unavailable",
}


class ErrorDetail(BaseModel):
    loc: list[str | int] = []
    message: str
    type: str | None = None


class Error(BaseModel):
    code: str
    message: str
    details: list[ErrorDetail] = []


class ErrorBody(BaseModel):
    """The body of every error response."""

    error: Error


class ApiError(Exception):
    """An error to answer with: a status, a stable code for programs, a message for people."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        details: Sequence[ErrorDetail] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or _CODES.get(status, f"http_{status}")
        self.message = message
        self.details = list(details)
        self.headers = dict(headers or {})


def not_authenticated(message: str) -> ApiError:
    return ApiError(401, message, headers={"WWW-Authenticate": "Bearer"})


def not_found(what: str) -> ApiError:
    return ApiError(404, f"{what} not found")


def conflict(message: str) -> ApiError:
    return ApiError(409, message)


def error_response(error: ApiError) -> JSONResponse:
    body = ErrorBody(error=Error(code=error.code, message=error.message, details=error.details))
    return JSONResponse(body.model_dump(), status_code=error.status, headers=error.headers)


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in {
        401: "No valid token or API key",
        403: "The role may not do this",
        422: "The request is not valid",
        503: "The database cannot be reached; try again",
    }.items()
}


def install(app: FastAPI) -> None:
    """Makes every error of `app` answer in the one shape."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(HTTPException, _http_exception)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(ImmutableRowError, _immutable_row)
    app.add_exception_handler(sa_exc.IntegrityError, _integrity_error)
    app.add_exception_handler(sa_exc.DataError, _data_error)
    for unavailable in (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError):
        app.add_exception_handler(unavailable, _database_unavailable)
    app.add_middleware(UnexpectedErrors)


async def _api_error(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, ApiError)
    return error_response(error)


async def _http_exception(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, HTTPException)
    messages = {404: "no such route", 405: "this route does not take that method"}
    message = messages.get(error.status_code) or str(error.detail)
    return error_response(ApiError(error.status_code, message, headers=error.headers))


async def _validation_error(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    # Only where and why: the input itself may be a password or a caller's number.
    details = [
        ErrorDetail(loc=list(item.get("loc", ())), message=item["msg"], type=item.get("type"))
        for item in error.errors()
    ]
    return error_response(ApiError(422, "the request is not valid; see details", details=details))


async def _immutable_row(_request: Request, error: Exception) -> JSONResponse:
    return error_response(ApiError(409, str(error), code="immutable"))


async def _integrity_error(_request: Request, error: Exception) -> JSONResponse:
    log.info("a write broke a database rule", extra={"rule": _constraint_name(error)})
    return error_response(
        conflict("the change conflicts with data already stored (a duplicate or a reference)")
    )


async def _data_error(_request: Request, _error: Exception) -> JSONResponse:
    return error_response(ApiError(422, "a value is out of the range the database can store"))


async def _database_unavailable(_request: Request, error: Exception) -> JSONResponse:
    # The driver's own first line ("database is locked", "connection refused"), never the
    # statement or its parameters.
    reason = str(getattr(error, "orig", None) or type(error).__name__).splitlines()[0][:200]
    log.warning(
        "the database is unavailable", extra={"error": type(error).__name__, "reason": reason}
    )
    return error_response(
        ApiError(
            503,
            "the database cannot be reached; try again shortly",
            code="database_unavailable",
            headers={"Retry-After": "5"},
        )
    )


def _constraint_name(error: Exception) -> str | None:
    diag = getattr(getattr(error, "orig", None), "diag", None)
    return getattr(diag, "constraint_name", None)


class UnexpectedErrors:
    """Answers an unhandled exception with a 500 in the error shape, and logs its trace."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_tracking(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_tracking)
        except Exception:
            log.exception(
                "unexpected error", extra={"method": scope["method"], "path": scope["path"]}
            )
            if started:
                raise
            response = error_response(ApiError(500, "unexpected error; it has been logged"))
            await response(scope, receive, send)
