"""A logging filter that masks date and long-number patterns: a backstop, not the main PHI defence.

The main defence is that log calls only ever carry file ids, counts, row numbers, column names,
rule ids and reason codes.
"""

import logging
import re

_PATTERNS = (
    re.compile(r"\b\d{4}-\d{2}-\d{2}\b"),  # ISO dates (dates of birth, dates of service)
    re.compile(r"\b\d{1,2}/\d{1,2}/\d{2,4}\b"),  # US dates
    re.compile(r"\b[A-Za-z]{1,5}-\d{3,}\b"),  # ids like MBR-000123 (before bare numbers: masked whole)
    re.compile(r"\b\d{6,}\b"),  # member ids, MRNs, phone numbers
)


def mask(text: str) -> str:
    for pattern in _PATTERNS:
        text = pattern.sub("***", text)
    return text


class MaskingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string must not break logging
            return True
        masked = mask(message)
        if masked != message:
            record.msg, record.args = masked, ()
        return True


def install() -> None:
    """Attach the filter where our and Prefect's run loggers create records (idempotent)."""
    for name in ("pipeline", "prefect.flow_runs", "prefect.task_runs"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, MaskingFilter) for f in logger.filters):
            logger.addFilter(MaskingFilter())
