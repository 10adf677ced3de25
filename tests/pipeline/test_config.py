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
