"""Configuration: typed, validated, with errors that name the key and the expected value."""

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.config import ConfigError, load_config


def test_defaults_need_no_file(monkeypatch):
    """It works with no configuration at all."""
    monkeypatch.delenv("CLAIMSCRUB_CONFIG", raising=False)
    cfg = load_config(None)
    assert cfg.schedule == "0 2 * * *" and cfg.default.repeat_interval_days == 84
    assert cfg.profile_for("Anything").bilateral_style.value == "any"


@pytest.mark.parametrize(("text", "key"), [
    ('[payers.Medicare]\nbilateral_style = "both"\n', "payers.Medicare.bilateral_style"),
    ('[default]\nrepeat_interval_days = "soon"\n', "default.repeat_interval_days"),
    ('severity = { "HFS-999" = "error" }\n', "severity"),
    ('inbx = "typo"\n', "inbx"),
])
def test_bad_config_names_the_key(tmp_path, text, key):
    """It refuses a bad value or an unknown key, naming it."""
    p = tmp_path / "c.toml"
    p.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(p)
    assert key in str(err.value) and str(p) in str(err.value)


def test_environment_overrides_paths(tmp_path, monkeypatch):
    """It lets CLAIMSCRUB_* variables override the file's paths and schedule."""
    p = tmp_path / "c.toml"
    p.write_text('inbox = "a"\nschedule = "0 3 * * *"\n')
    monkeypatch.setenv("CLAIMSCRUB_INBOX", "/srv/in")
    cfg = load_config(p)
    assert str(cfg.inbox) == "/srv/in" and cfg.schedule == "0 3 * * *"


def test_rules_command_shows_effective_severity(tmp_path):
    """It prints overridden severities and disabled rules."""
    p = tmp_path / "c.toml"
    p.write_text('severity = { "HFS-027" = "error" }\ndisabled = ["HFS-012"]\n')
    out = CliRunner().invoke(app, ["rules", "--config", str(p)]).output
    assert "HFS-027   error" in out and "(disabled)" in out
    bad = tmp_path / "bad.toml"
    bad.write_text("disabled = 3\n")
    res = CliRunner().invoke(app, ["rules", "--config", str(bad)])
    assert res.exit_code == 2 and "disabled" in res.output


@pytest.mark.parametrize(("payer", "profile"), [
    ("Medicare", "Medicare"), ("MEDICARE - Part B", "Medicare"), ("medicare part b.", "Medicare"),
    ("Original  Medicare", "Medicare"), ("Noridian Healthcare Solutions JE", "Medicare Noridian"),
    ("Novitas Solutions JL", "Medicare Novitas"), ("First Coast Service Options", "Medicare First Coast"),
    ("Palmetto GBA", "Medicare Palmetto"), ("National Government Services", "Medicare NGS"),
    ("WPS", "Medicare WPS"), ("CGS Administrators, LLC", "Medicare CGS"),
    ("UHC Medicare Advantage", "Medicare Advantage"), ("Humana Medicare HMO", "Medicare Advantage"),
    ("Medicare Replacement (Aetna)", "Medicare Advantage"), ("Medicare Supplement (Aetna)", "Medicare"),
    ("Aetna", None), ("", None), (None, None),
])
def test_payer_names_reach_their_profile(payer, profile):
    """It matches payer names to the shipped profiles ignoring case, spaces and punctuation, by alias or pattern."""
    cfg = load_config(None)
    assert cfg.profile_name_for(payer) == profile
    expected = cfg.payers[profile] if profile else cfg.default
    assert cfg.profile_for(payer) == expected


def test_medicare_profiles_carry_filing_days_mac_and_lcd_dates():
    """It ships Medicare (365 days) and its MACs, the rewritten LCDs with their 2026 dates, the others without."""
    import datetime as dt

    cfg = load_config(None)
    assert cfg.payers["Medicare"].timely_filing_days == 365 and cfg.payers["Medicare"].lcd_effective is None
    assert cfg.payers["Medicare Noridian"].lcd_effective == dt.date(2026, 2, 22)
    assert cfg.payers["Medicare WPS"].lcd_effective == dt.date(2026, 2, 15)
    assert cfg.payers["Medicare Novitas"].lcd_effective is None and cfg.payers["Medicare Novitas"].mac.startswith("Novitas")
    assert cfg.payers["Medicare Noridian"].timely_filing_days == 365  # from Medicare (extends)


def test_claimscrub_toml_overrides_extends_and_adds_profiles(tmp_path):
    """It merges a profile of the same name (settings replaced, aliases added), passes Medicare's settings on to
    the MAC profiles, checks the user's own profiles first, and can drop the shipped ones."""
    p = tmp_path / "c.toml"
    p.write_text('[payers.MEDICARE]\ntimely_filing_days = 300\naliases = ["Mcare"]\n'
                 '[payers.Acme]\npatterns = ["acme"]\ntimely_filing_days = 90\n'
                 '[payers."Acme Medicare"]\npatterns = ["acme medicare"]\nextends = "Medicare"\n'
                 '[default]\nseverity = { "HFS-027" = "error" }\n')
    cfg = load_config(p)
    assert cfg.profile_name_for("mcare") == "Medicare" and cfg.profile_name_for("Medicare Part B") == "Medicare"
    assert cfg.payers["Medicare"].timely_filing_days == 300
    assert cfg.payers["Medicare Noridian"].timely_filing_days == 300
    assert cfg.profile_name_for("ACME Health Plan") == "Acme" and cfg.profile_for("acme").timely_filing_days == 90
    assert cfg.profile_name_for("Acme Medicare Gold") == "Acme"  # the first matching pattern, user's profiles first
    assert cfg.payers["Acme Medicare"].timely_filing_days == 300
    assert cfg.payers["Medicare"].severity["HFS-027"].value == "error"  # [default] reaches the shipped profiles
    assert "HFS-027" not in cfg.payers["Acme"].severity  # but not a profile of the user's
    p.write_text("builtin_payers = false\n")
    assert load_config(p).profile_name_for("Medicare Part B") is None


@pytest.mark.parametrize(("text", "said"), [
    ('[payers.X]\npatterns = ["(unclosed"]\n', "payers.X.patterns"),
    ('[payers.X]\nextends = "Nobody"\n', "no profile named 'Nobody'"),
    ('[payers.X]\nextends = "Y"\n[payers.Y]\nextends = "X"\n', "a cycle"),
    ('[payers.X]\ndose_caps = [{ effective = 2026-01-01, side_max_units = -3 }]\n', "side_max_units"),
])
def test_bad_profile_is_refused_with_its_key(tmp_path, text, said):
    """It refuses a bad pattern, an unknown or circular ``extends`` and a bad dose cap, saying which."""
    p = tmp_path / "c.toml"
    p.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(p)
    assert said in str(err.value)
