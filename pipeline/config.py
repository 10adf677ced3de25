"""Typed configuration: one TOML file (``claimscrub.toml``) validated with pydantic.

Defaults need no file at all. ``CLAIMSCRUB_CONFIG`` names the file when ``--config`` is not given;
``CLAIMSCRUB_<KEY>`` environment variables override the top-level path settings.
"""

import os
import tomllib
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from schemas.rules import RULES_BY_ID, Severity

# With the Dask runner, a file with more lines than this is validated in parts across the cluster.
PARTITION_LINES = 250_000


class BilateralStyle(StrEnum):
    MOD_50 = "50"
    RT_LT = "RT_LT"
    ANY = "any"


def _check_rule_ids(value):
    for rule_id in value:
        if rule_id not in RULES_BY_ID:
            raise ValueError(f"unknown rule id {rule_id!r}")
    return value


MAX_REPEAT_INTERVAL_DAYS = 366  # the longest repeat interval a profile may set: how far back history matters


class PayerProfile(BaseModel):
    """How one payer wants G51.33 chemodenervation billed."""

    model_config = ConfigDict(extra="forbid")
    bilateral_style: BilateralStyle = Field(BilateralStyle.ANY, description="50, RT_LT or any (HFS-009)")
    repeat_interval_days: int = Field(84, ge=1, le=MAX_REPEAT_INTERVAL_DAYS,
                                      description="Minimum days between sessions (repeat-interval rule)")
    side_min_units: float = Field(5, ge=0, description="Lowest plausible Botox-equivalent units per side")
    side_max_units: float = Field(100, gt=0, description="Highest plausible Botox-equivalent units per side")
    session_cap_units: float = Field(200, gt=0, description="Highest plausible units per session")
    severity: dict[str, Severity] = Field(default_factory=dict, description="Rule id -> severity override")
    disabled: list[str] = Field(default_factory=list, description="Rule ids not applied for this payer")

    _known_rules = field_validator("severity", "disabled")(classmethod(lambda cls, v: _check_rule_ids(v)))


class DateOrder(StrEnum):
    MDY = "MDY"
    DMY = "DMY"


class ScrubConfig(BaseModel):
    """All settings; every field has a default."""

    model_config = ConfigDict(extra="forbid")
    inbox: Path = Field(Path("inbox"), description="Folder the billing team drops claim files in")
    outbox: Path = Field(Path("outbox"), description="Folder for the exceptions workbooks")
    archive: Path = Field(Path("archive"), description="Folder scrubbed inputs are moved to")
    quarantine: Path = Field(Path("quarantine"), description="Folder unreadable inputs are moved to")
    ledger: Path = Field(Path("ledger.sqlite"), description="SQLite ledger file")
    schedule: str = Field("0 2 * * *", description="Cron schedule of the nightly run")
    timezone: str = Field("America/New_York", description="Time zone of the schedule")
    settle_seconds: float = Field(60, ge=0, description="Skip files modified this recently")
    ledger_backups: int = Field(7, ge=1, description="Ledger backups kept after each night (<ledger>.backups/)")
    max_files_in_flight: int | None = Field(
        None, ge=1, description="Nightly: files scrubbed at once, each in its own child (default: the number of cores)")
    date_order: DateOrder = Field(
        DateOrder.MDY, description="How a slash date such as 03/04/2024 is read when no value of its column proves "
        "the order: MDY (US, month first) or DMY (day first); noted once per file")
    default: PayerProfile = Field(default_factory=PayerProfile, description="Profile for unlisted payers")
    payers: dict[str, PayerProfile] = Field(default_factory=dict, description="Payer name -> profile")
    severity: dict[str, Severity] = Field(default_factory=dict, description="Rule id -> severity, all payers")
    disabled: list[str] = Field(default_factory=list, description="Rule ids not applied at all")

    _known_rules = field_validator("severity", "disabled")(classmethod(lambda cls, v: _check_rule_ids(v)))

    def profile_for(self, payer: str | None) -> PayerProfile:
        if payer:
            key = payer.strip().casefold()
            for name, profile in self.payers.items():
                if name.strip().casefold() == key:
                    return profile
        return self.default


class ConfigError(ValueError):
    """A bad configuration file: names the key and what was expected."""


def load_config(path: Path | str | None = None) -> ScrubConfig:
    """Read and validate the config (``path``, else ``CLAIMSCRUB_CONFIG``, else defaults)."""
    path = path or os.environ.get("CLAIMSCRUB_CONFIG")
    data: dict = {}
    if path:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read config ({exc.strerror})") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    for key in ("inbox", "outbox", "archive", "quarantine", "ledger", "schedule", "timezone", "settle_seconds",
                "ledger_backups"):
        env = os.environ.get(f"CLAIMSCRUB_{key.upper()}")
        if env:
            data[key] = env
    try:
        return ScrubConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"{path or 'configuration'}: {problems}") from None
