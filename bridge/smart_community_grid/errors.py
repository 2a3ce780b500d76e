"""What goes wrong in a request, as the grid's own exceptions.

The HTTP layer turns each into an OpenADR ``problem`` body with the status it carries; the
domain code raises them without knowing about HTTP frameworks.
"""

from __future__ import annotations


class ProblemError(Exception):
    """A request the grid refuses; ``detail`` tells the client what to fix."""

    status = 500
    title = "Internal Server Error"

    def __init__(self, detail: str) -> None:
        """Carry the human-readable detail."""
        super().__init__(detail)
        self.detail = detail


class BadRequest(ProblemError):
    """The request is malformed or names something that does not exist."""

    status = 400
    title = "Bad Request"


class Unauthorized(ProblemError):
    """No token, or a token the grid did not issue or that has expired."""

    status = 401
    title = "Unauthorized"


class Forbidden(ProblemError):
    """The token lacks the scope the operation needs."""

    status = 403
    title = "Forbidden"


class NotFound(ProblemError):
    """No object with that id, or none the caller may see."""

    status = 404
    title = "Not Found"


class Conflict(ProblemError):
    """The request clashes with what is stored (a duplicate name, a program still in use)."""

    status = 409
    title = "Conflict"
