"""The one error type of the service's endpoints: an HTTP status and a one-line reason."""
from __future__ import annotations

from errors import UserError


class ApiError(UserError):
    """A request the service refuses: `status` (400, 404, 409, 413, 415, ...) and a one-line reason naming the
    field or file and the fix; answered as JSON {"detail": reason}."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
