"""Errors the service reports, and the mapping of every known failure to a gRPC status with a clear message."""
from __future__ import annotations

import grpc

from .audio_input import InvalidAudioError
from .face import FaceSelectionError, InvalidImageError, NoFaceError
from .media import InvalidVideoError
from .templates import InvalidTemplateError
from .triton_client import TritonError


class ServiceError(Exception):
    code = grpc.StatusCode.INTERNAL


class InvalidRequest(ServiceError):
    """Undecodable, empty, oversized or unsupported input or option."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class NoFace(ServiceError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class FailedPrecondition(ServiceError):
    """The request cannot run as asked on this server (e.g. animal mode without a box or without the models)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class Overloaded(ServiceError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(ServiceError):
    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(ServiceError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


TRITON_CODES = {
    "UNAVAILABLE": (grpc.StatusCode.UNAVAILABLE, "the inference server (Triton) is unavailable; retry later"),
    "DEADLINE_EXCEEDED": (grpc.StatusCode.DEADLINE_EXCEEDED, "the request ran out of time"),
    "RESOURCE_EXHAUSTED": (grpc.StatusCode.RESOURCE_EXHAUSTED, "the inference server is overloaded; retry later"),
    "CANCELLED": (grpc.StatusCode.CANCELLED, "the request was cancelled"),
}


def status_of(exc: BaseException) -> tuple[grpc.StatusCode, str] | None:
    """(code, message) for an expected failure; None for a bug (reported as INTERNAL without details)."""
    if isinstance(exc, ServiceError):
        return exc.code, str(exc)
    if isinstance(exc, (InvalidImageError, InvalidVideoError, InvalidAudioError, InvalidTemplateError,
                        FaceSelectionError)):
        return grpc.StatusCode.INVALID_ARGUMENT, str(exc)
    if isinstance(exc, NoFaceError):
        return grpc.StatusCode.FAILED_PRECONDITION, str(exc)
    if isinstance(exc, TritonError):
        code, message = TRITON_CODES.get(exc.code, (grpc.StatusCode.INTERNAL, "the inference server failed"))
        return code, f"{message} (model {exc.model}: {exc.code})"
    return None
