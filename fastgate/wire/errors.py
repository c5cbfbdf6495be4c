"""The error a sans-IO parser raises for a message head that must be refused."""


class HeadError(Exception):
    """A head that must be refused: ``status`` is the answer (400, 414, 431, 501...)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
