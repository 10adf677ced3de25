"""Typed configuration: one TOML file (``claimscrub.toml``) validated with pydantic.

Defaults need no file at all. ``CLAIMSCRUB_CONFIG`` names the file when ``--config`` is not given;
``CLAIMSCRUB_<KEY>`` environment variables override the top-level path settings.
"""

import datetime as dt
import functools
import os
import re
import tomllib
import unicodedata
from enum import StrEnum
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

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


def payer_key(name: object) -> str:
    """A payer name reduced for matching: NFKC, case-folded, every run of spaces and punctuation one space."""
    text = unicodedata.normalize("NFKC", str(name)).casefold()
    return " ".join(re.findall(r"[^\W_]+", text))


class DoseCap(BaseModel):
    """A payer's dose cap from a date of service on (e.g. an LCD's units per side for hemifacial spasm)."""

    model_config = ConfigDict(extra="forbid")
    effective: dt.date = Field(description="First date of service the cap applies to")
    side_max_units: float | None = Field(None, gt=0, description="Highest Botox-equivalent units a side (HFS-016)")
    session_cap_units: float | None = Field(None, gt=0, description="Highest Botox-equivalent units a session (HFS-016)")
    source: str = Field("", description="The policy that sets the cap (LCD number, payer policy)")


class PayerProfile(BaseModel):
    """How one payer wants G51.33 chemodenervation billed, and which payer names reach it."""

    model_config = ConfigDict(extra="forbid")
    aliases: list[str] = Field(default_factory=list, description=(
        "Other names of this payer, matched ignoring case, spaces and punctuation"))
    patterns: list[str] = Field(default_factory=list, description=(
        "Regular expressions searched in the payer name once reduced (lower case, words separated by one space)"))
    extends: str | None = Field(None, description="A profile whose settings this one takes unless it sets them")
    timely_filing_days: int = Field(365, ge=1, description="Days after the date of service a claim may be filed (STR-012)")
    mac: str | None = Field(None, description="Medicare Administrative Contractor and jurisdiction(s), e.g. Noridian JE")
    lcd: str | None = Field(None, description="The MAC's botulinum-toxin LCD (and billing article) numbers")
    lcd_effective: dt.date | None = Field(None, description=(
        "Effective date of the MAC's 2026 LCD, from which hemifacial spasm is off-label there (HFS-033)"))
    follows_lcds: bool = Field(False, description=(
        "Medicare's LCDs apply to this payer's claims (Medicare, its MACs, Medicare Advantage: 42 CFR 422.101(b)): "
        "without lcd_effective, HFS-033 is listed as not checked on its 2026 claims, never passed"))
    dose_caps: list[DoseCap] = Field(default_factory=list, description="Dose caps with their effective dates (HFS-016)")
    bilateral_style: BilateralStyle = Field(BilateralStyle.ANY, description="50, RT_LT or any (HFS-009)")
    repeat_interval_days: int = Field(84, ge=1, le=MAX_REPEAT_INTERVAL_DAYS,
                                      description="Minimum days between sessions (repeat-interval rule)")
    side_min_units: float = Field(5, ge=0, description="Lowest plausible Botox-equivalent units per side")
    side_max_units: float = Field(100, gt=0, description="Highest plausible Botox-equivalent units per side")
    session_cap_units: float = Field(200, gt=0, description="Highest plausible units per session")
    ncci_applies: bool = Field(True, description="The payer applies the NCCI edits (MUE and PTP rules)")
    severity: dict[str, Severity] = Field(default_factory=dict, description="Rule id -> severity override")
    disabled: list[str] = Field(default_factory=list, description="Rule ids not applied for this payer")

    _known_rules = field_validator("severity", "disabled")(classmethod(lambda cls, v: _check_rule_ids(v)))

    @field_validator("patterns")
    @classmethod
    def _patterns_compile(cls, value: list[str]) -> list[str]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"pattern {pattern!r} is not a regular expression ({exc})") from None
        return value

    def cap_on(self, attr: str, dates: pd.Series) -> np.ndarray:
        """``attr`` (side_max_units or session_cap_units) per date: the latest dose cap in effect on the date
        that sets it, else the profile's own value."""
        out = np.full(len(dates), float(getattr(self, attr)))
        for cap in sorted(self.dose_caps, key=lambda c: c.effective):
            if getattr(cap, attr) is not None:
                out[(dates >= pd.Timestamp(cap.effective)).to_numpy(bool)] = getattr(cap, attr)
        return out


_LISTS = ("aliases", "patterns")


def _overlay(base: PayerProfile, top: PayerProfile, lists: bool = True) -> PayerProfile:
    """``base`` with the settings ``top`` sets; ``lists``: its aliases and patterns added to base's, else
    top's own only."""
    update = {f: getattr(top, f) for f in top.model_fields_set if f not in _LISTS}
    for f in _LISTS:
        update[f] = list(dict.fromkeys([*getattr(base, f), *getattr(top, f)])) if lists else list(getattr(top, f))
    return base.model_copy(update=update)


BUILTIN_PROFILES = "payers.toml"


@functools.cache
def builtin_profiles() -> tuple[PayerProfile, dict[str, PayerProfile]]:
    """The shipped default profile and named payer profiles (``pipeline/payers.toml``)."""
    data = tomllib.loads(resources.files("pipeline").joinpath(BUILTIN_PROFILES).read_text(encoding="utf-8"))
    return (PayerProfile.model_validate(data.get("default", {})),
            {name: PayerProfile.model_validate(p) for name, p in data.get("payers", {}).items()})


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
    ledger: Path | str = Field(Path("ledger.sqlite"), description="SQLite ledger file, or a PostgreSQL database: "
                               "postgresql://user@host:port/db (password from PGPASSWORD or ~/.pgpass) or "
                               "prefect-secret://NAME (a Prefect Secret block holding the URL)")
    wait_for_other_runs_seconds: float = Field(
        3600, ge=0, description="PostgreSQL ledger: how long a night waits, after its own files, for other "
        "processes' files still in flight before its cross-file repeat pass (HFS-030 between them)")
    schedule: str = Field("0 2 * * *", description="Cron schedule of the nightly run")
    timezone: str = Field("America/New_York", description="Time zone of the schedule")
    settle_seconds: float = Field(60, ge=0, description="Skip files modified this recently")
    ledger_backups: int = Field(7, ge=1, description="Ledger backups kept after each night (<ledger>.backups/)")
    max_files_in_flight: int | None = Field(
        None, ge=1, description="Nightly: files scrubbed at once, each in its own child (default: the number of cores)")
    output_mode: int = Field(0o640, description="Permissions of the workbooks and CSVs written (octal: 0o640 or "
                             "\"0640\"): by default the owner writes and the billing team's group reads")
    reference_dir: Path = Field(Path("reference"), description="Folder of imported reference tables "
                                "(claimscrub reference import); they take precedence over the shipped ones")
    outbox_link: str | None = Field(None, description=(
        "Where the team opens the outbox, for the nightly artifact's link: a URL (https://files.example.org/outbox), "
        "a share path (\\\\fileserver\\claims\\outbox) or a path as the team mounts it; default: the outbox "
        "path and the host it is on"))
    date_order: DateOrder = Field(
        DateOrder.MDY, description="How a slash date such as 03/04/2024 is read when no value of its column proves "
        "the order: MDY (US, month first) or DMY (day first); noted once per file")
    default: PayerProfile = Field(default_factory=PayerProfile, description="Profile for unlisted payers")
    payers: dict[str, PayerProfile] = Field(default_factory=dict, description=(
        "Profile name -> profile; the shipped profiles (pipeline/payers.toml) are merged in: a profile of the same "
        "name overrides the settings it sets and adds its aliases and patterns"))
    builtin_payers: bool = Field(True, description="Merge the shipped payer profiles (Medicare and its MACs)")
    _matcher: tuple | None = PrivateAttr(None)
    severity: dict[str, Severity] = Field(default_factory=dict, description="Rule id -> severity, all payers")
    disabled: list[str] = Field(default_factory=list, description="Rule ids not applied at all")

    _known_rules = field_validator("severity", "disabled")(classmethod(lambda cls, v: _check_rule_ids(v)))

    @field_validator("ledger", mode="before")
    @classmethod
    def _ledger_target(cls, v):
        """A PostgreSQL URL stays text (a path would fold its ``//``); anything else is a path."""
        from pipeline.ledger import is_url

        return v if is_url(v) else Path(v)

    @field_validator("outbox_link")
    @classmethod
    def _link_base(cls, value: str | None) -> str | None:
        value = (value or "").strip() or None
        if value and not (value.startswith(("\\\\", "/")) or re.match(r"^([a-zA-Z]:[\\/]|[a-zA-Z][a-zA-Z0-9+.-]*://\S)", value)):
            raise ValueError(f"{value!r} is not a URL (https://files.example.org/outbox), a share path "
                             "(\\\\fileserver\\claims\\outbox) or an absolute path")
        return value

    @field_validator("output_mode", mode="before")
    @classmethod
    def _octal_mode(cls, value):
        """A mode as TOML writes it (0o640), or as octal text ("0640", "640")."""
        if isinstance(value, str):
            try:
                value = int(value.strip().removeprefix("0o"), 8)
            except ValueError:
                raise ValueError(f"{value!r} is not an octal file mode such as 0640") from None
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 0o777:
            raise ValueError("a file mode is an octal number from 0000 to 0777, such as 0640")
        if not value & 0o600 == 0o600:
            raise ValueError("the owner must be able to read and write the outputs (mode 0600 at least)")
        return value

    @model_validator(mode="after")
    def _merge_profiles(self) -> "ScrubConfig":
        """Merge the shipped profiles under the user's, then resolve ``extends`` (idempotent: a merged config
        merged again is the same)."""
        default, shipped = builtin_profiles() if self.builtin_payers else (PayerProfile(), {})
        self.default = _overlay(default, self.default)
        # A shipped profile takes the [default] settings it does not set itself (so [default] severities still
        # reach Medicare claims, as before Medicare had a profile); a profile of the user's does not.
        shipped = {name: p if p.extends else _overlay(self.default, p, lists=False) for name, p in shipped.items()}
        by_key = {payer_key(name): name for name in shipped}
        merged = {name: p for name, p in self.payers.items() if payer_key(name) not in by_key}  # checked first
        merged.update(shipped)
        for name, profile in self.payers.items():
            if payer_key(name) in by_key:
                same = by_key[payer_key(name)]
                merged[same] = _overlay(merged[same], profile)
        for name, profile in merged.items():
            seen = [name]
            while profile.extends:
                if profile.extends not in merged:
                    raise ValueError(f"payers.{name}.extends: no profile named {profile.extends!r}")
                if profile.extends in seen:
                    raise ValueError(f"payers.{name}.extends: a cycle ({' -> '.join(seen)})")
                seen.append(profile.extends)
                base = merged[profile.extends]
                profile = _overlay(base, profile, lists=False).model_copy(update={"extends": base.extends})
            merged[name] = profile
        self.payers = merged
        self._matcher = None
        return self

    def _match_table(self) -> tuple[dict[str, str], list[tuple[re.Pattern, str]]]:
        """Reduced name or alias -> profile name, and the (pattern, profile name) pairs in profile order."""
        if self._matcher is None:
            exact, patterns = {}, []
            for name in self.payers:  # profile names first, then aliases
                exact.setdefault(payer_key(name), name)
            for name, profile in self.payers.items():
                for alias in profile.aliases:
                    exact.setdefault(payer_key(alias), name)
                patterns += [(re.compile(p), name) for p in profile.patterns]
            self._matcher = (exact, patterns)
        return self._matcher

    def profile_name_for(self, payer: str | None) -> str | None:
        """The profile a payer name reaches: its own name or an alias (case, spaces and punctuation aside),
        else the first profile with a pattern found in it; None: no profile (the default applies)."""
        if payer is None or payer is pd.NA or (isinstance(payer, float) and np.isnan(payer)):
            return None
        key = payer_key(payer)
        exact, patterns = self._match_table()
        if key in exact:
            return exact[key]
        return next((name for pattern, name in patterns if pattern.search(key)), None)

    def profile_for(self, payer: str | None) -> PayerProfile:
        name = self.profile_name_for(payer)
        return self.payers[name] if name else self.default

    def profiles_of(self, payers: pd.Series) -> tuple[np.ndarray, list[str | None], list[PayerProfile]]:
        """Per row of ``payers``: the index of its profile in the two lists returned (profile names, None for
        the default; profiles). Decided once per distinct payer name."""
        codes, names = pd.factorize(payers)
        matched = [self.profile_name_for(n) for n in names.tolist()] + [None]  # code -1 (blank) -> default
        which = np.arange(len(matched))[codes]
        return which, matched, [self.payers[m] if m else self.default for m in matched]


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
                "ledger_backups", "output_mode"):
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
