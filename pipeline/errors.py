"""Our exception types: fixed, safe messages (no cell values, no patient data, no paths)."""


class IngestError(Exception):
    """A file that cannot be read at all; ``code`` is a reason code, ``rule`` a file rule id (schemas/rules/file.py)."""

    def __init__(self, code: str, rule: str, reason: str, file: str = "", sheet: str = ""):
        self.code, self.rule, self.reason, self.file, self.sheet = code, rule, reason, file, sheet
        # The text carries no file name: it can reach logs and Prefect state messages. Callers that
        # talk to the user (CLI, quarantine sidecar) name the file themselves from ``file``.
        super().__init__(f"{reason} [{code}]")


class OutputError(OSError):
    """Outputs could not be written (folder unwritable, disk full); the input stays recoverable."""

    def __init__(self, code: str, reason: str):
        self.code, self.reason = code, reason
        super().__init__(f"{reason} [{code}]")


class ScrubFailure(RuntimeError):
    """An unexpected failure, reduced to a safe message: the stage and the exception type only."""

    def __init__(self, stage: str, exc: BaseException):
        self.code = "E_INTERNAL"
        self.reason = f"unexpected {type(exc).__name__} while {stage}"
        super().__init__(f"{self.reason} [{self.code}]")
