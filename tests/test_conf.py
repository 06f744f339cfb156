"""The top-level abaco.conf documents every option: same keys and defaults as Settings."""

from __future__ import annotations

import pathlib
import tomllib
from typing import Any, get_type_hints

import attrs
import pytest

from abaco.config import Settings, load_settings

CONF = pathlib.Path(__file__).resolve().parent.parent / "abaco.conf"


def _sections() -> dict[str, type[Any]]:
    return get_type_hints(Settings)


def _defaults(cls: type[Any]) -> dict[str, Any]:
    return {field.name: field.default for field in attrs.fields(cls)}


@pytest.fixture(scope="module")
def conf() -> dict[str, Any]:
    with CONF.open("rb") as file:
        return tomllib.load(file)


def test_conf_has_exactly_the_settings_sections(conf):
    assert list(conf) == list(_sections())


@pytest.mark.parametrize("section", list(_sections()))
def test_conf_section_matches_its_class(conf, section):
    cls = _sections()[section]
    defaults = _defaults(cls)
    assert list(conf[section]) == list(defaults), f"[{section}] keys differ from {cls.__name__}"
    for key, default in defaults.items():
        value = conf[section][key]
        assert value == default, f"[{section}] {key} = {value!r}, but the default is {default!r}"
        assert type(value) is type(default), f"[{section}] {key} should be a {type(default)}"


def test_every_option_has_a_comment_above_it():
    lines = CONF.read_text().splitlines()
    for number, line in enumerate(lines):
        if "=" in line and not line.startswith("#"):
            assert lines[number - 1].startswith("# "), f"abaco.conf:{number + 1} has no comment"


def test_header_says_how_to_override():
    header = CONF.read_text().split("[state]")[0]
    for words in ("--config", "ABACO_CONF", "ABACO__SECTION__KEY"):
        assert words in header


def test_conf_loads_to_the_defaults():
    assert load_settings(CONF, environ={}) == Settings()
