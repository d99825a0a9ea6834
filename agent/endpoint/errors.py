"""Kinesis API errors as AWS JSON 1.1 sends them: an HTTP status and a ``__type`` code."""

from __future__ import annotations


class ApiError(Exception):
    """An error answer: ``code`` becomes ``__type`` (what boto3's ``Error.Code`` reads)."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


def not_found(message: str) -> ApiError:
    return ApiError("ResourceNotFoundException", message)


def invalid(message: str) -> ApiError:
    return ApiError("InvalidArgumentException", message)


def validation(message: str) -> ApiError:
    return ApiError("ValidationException", message)


def throughput(message: str) -> ApiError:
    return ApiError("ProvisionedThroughputExceededException", message)
