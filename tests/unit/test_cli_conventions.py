"""Conventions every `domicile` command keeps, checked on the whole command tree: help for
every option, one meaning per short option, `--json` on every command, the environment
variables in the help, ISO 8601 wording for times, one error prefix."""

from __future__ import annotations

import json
from collections.abc import Iterator

import click
import pytest
from click.testing import CliRunner

from domicile.cli.base import ISO_TIME
from domicile.cli.main import cli


def commands(group: click.Group = cli, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    for name, command in sorted(group.commands.items()):
        yield (*path, name), command
        if isinstance(command, click.Group):
            yield from commands(command, (*path, name))


ALL = [((), cli), *commands()]


@pytest.mark.parametrize(("path", "command"), ALL, ids=[" ".join(p) or "domicile" for p, _ in ALL])
def test_every_command_and_option_has_help(path, command):
    assert command.help or command.short_help, f"{' '.join(path)} has no help"
    for param in command.params:
        if isinstance(param, click.Option):
            assert param.help, f"{' '.join(path)} {param.opts[0]} has no help"


def test_a_short_option_means_the_same_everywhere():
    meanings: dict[str, set[str]] = {}
    for _, command in ALL:
        for param in command.params:
            if isinstance(param, click.Option):
                longs = [o for o in param.opts if o.startswith("--")]
                for short in (o for o in param.opts if len(o) == 2):
                    meanings.setdefault(short, set()).update(longs)
    assert {s: m for s, m in meanings.items() if len(m) > 1} == {}
    assert meanings["-o"] == {"--output"} and meanings["-O"] == {"--output-file"} and meanings["-g"] == {"--origin"}


@pytest.mark.parametrize(("path", "command"), ALL, ids=[" ".join(p) or "domicile" for p, _ in ALL])
def test_every_command_takes_json_after_its_name(path, command):
    assert any(isinstance(p, click.Option) and "--json" in p.opts for p in command.params), " ".join(path)
    result = CliRunner().invoke(cli, [*path, "--json", "--help"])
    assert result.exit_code == 0, result.output


def test_the_help_names_the_environment_and_the_exit_statuses():
    text = CliRunner().invoke(cli, ["--help"]).output
    for name in (
        "DOMICILE_SERVER",
        "DOMICILE_TOKEN",
        "DOMICILE_INSECURE",
        "DOMICILE_HOME",
        "DOMICILE_DATA_DIR",
        "DOMICILE_CA_CERT",
        "DOMICILE_CLIENT_CERT",
        "DOMICILE_CLIENT_KEY",
        "DOMICILE_CONFIG",
        "XDG_CONFIG_HOME",
    ):
        assert name in text, name
    words = " ".join(text.split())
    assert "[env var: DOMICILE_SERVER;" in words  # beside the option it sets
    assert "4 a dataset asked about is unknown" in words
    assert "DOMICILE_<SETTING>" in CliRunner().invoke(cli, ["serve", "--help"]).output


def test_times_are_described_as_iso_8601():
    for path, command in ALL:
        text = CliRunner().invoke(cli, [*path, "--help"]).output
        assert "%Y" not in text and "%H" not in text, " ".join(path)
        for param in command.params:
            if param.name in ("as_of", "since", "until", "now"):
                assert param.type is ISO_TIME, f"{' '.join(path)} {param.opts[0]}"
    result = CliRunner().invoke(cli, ["dataset", "get", "s3://b/x", "--as-of", "last tuesday"])
    assert result.exit_code == 2
    assert "'last tuesday' is not an ISO 8601 time such as 2026-11-30T10:00:00Z" in result.stderr


def test_errors_have_one_prefix_and_are_json_under_json():
    for args in (["nosuch"], ["dataset", "put"], ["decide", "s3://b/x", "--op", "keep", "-r", "aws:eu-west-1"]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2
        assert result.stderr.startswith("error: ") and "Error:" not in result.stderr, result.stderr
        assert result.stdout == ""
        for where in (["--json", *args], [*args, "--json"]):
            result = CliRunner().invoke(cli, where)
            assert result.exit_code == 2
            error = json.loads(result.stderr)["error"]
            assert error["code"] == "USAGE_ERROR" and error["message"] and error["hint"].startswith("see '")


def test_country_codes_are_checked_before_any_call():
    result = CliRunner().invoke(cli, ["regions", "--country", "XX"])
    assert result.exit_code == 2 and "'XX' is not an ISO 3166-1 alpha-2 country code" in result.stderr
    result = CliRunner().invoke(cli, ["--json", "regions", "--country", "germany"])
    assert json.loads(result.stderr)["error"]["message"].endswith("did you mean 'DE'?")
