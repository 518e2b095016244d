"""Shipped configs: one lookup (medkt.paths.config_file) for names and paths, found via importlib.resources.

The wheel itself is checked by ``.ci/wheel-check`` (built, installed with --target, imported from
outside the checkout); these tests cover the lookup rules and that the package ``medkt.configs`` is
the repository's ``configs/`` folder.
"""
from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import pytest

from medkt.errors import ConfigError, UnknownNameError
from medkt.paths import CONFIG_KINDS, config_dir, config_file, list_configs

REPO = Path(__file__).resolve().parent.parent


def test_medkt_configs_package_is_the_top_level_configs_folder():
    pkg = Path(str(files("medkt.configs"))).resolve()
    assert pkg == (REPO / "configs").resolve()
    for kind in CONFIG_KINDS:
        assert config_dir(kind).resolve() == (REPO / "configs" / kind).resolve()
        assert list_configs(kind) == sorted(p.stem for p in (REPO / "configs" / kind).glob("*.yaml"))
        assert list_configs(kind), kind


def test_pyproject_ships_the_configs_package():
    text = (REPO / "pyproject.toml").read_text()
    assert '"medkt.configs" = ["*/*.yaml"]' in text
    assert (REPO / "medkt" / "configs").is_symlink() and (REPO / "configs" / "__init__.py").is_file()


def test_config_file_resolves_names_and_paths(tmp_path):
    assert config_file("concepts", "rare") == config_dir("concepts") / "rare.yaml"
    assert config_file("segment", "tiny").name == "tiny.yaml"
    own = tmp_path / "mine.yaml"
    own.write_text("concepts: []\n")
    assert config_file("concepts", own) == own and config_file("concepts", str(own)) == own


def test_unknown_name_lists_what_exists():
    with pytest.raises(UnknownNameError) as e:
        config_file("transfer", "papr")
    msg = str(e.value)
    assert "unknown transfer preset 'papr'" in msg and "Did you mean: paper" in msg
    assert all(n in msg for n in list_configs("transfer"))


def test_missing_path_is_not_taken_for_a_name(tmp_path):
    with pytest.raises(ConfigError, match="config file not found") as e:
        config_file("experiments", tmp_path / "nope.yaml")
    assert not isinstance(e.value, UnknownNameError)
    assert "table1_rare_concepts" in str(e.value)


def test_unknown_kind():
    with pytest.raises(UnknownNameError, match="config kind"):
        config_dir("presets")
