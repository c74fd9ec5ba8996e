"""Every setting, malformed, through lab.config.load in-process: a LabError with exit code 2 and a
one-line message naming the setting, never another exception and never a Settings.

In-process because loading settings is pure and takes ~1 ms: hypothesis can try hundreds of values
here, where the subprocess sweep (tests/integration/test_bad_input_home.py) affords a few dozen.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from support.badinput import YAML_FIELDS, bad_setting_env, bad_yaml_value, text

from lab import config
from lab.errors import LabError

EXAMPLES = 150


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The cwd: a file (for paths that run through a file) and the LAB_CONFIG files tests write."""
    root = tmp_path_factory.mktemp("badsettings")
    (root / "a-file").write_text("not a directory\n")
    with pytest.MonkeyPatch.context() as mp:
        for k in [k for k in os.environ if k.startswith("LAB_")]:
            mp.delenv(k)
        mp.chdir(root)
        mp.setenv("LAB_HOME", str(root / "home"))
        yield root


def _refused(field: str, **env: str) -> LabError:
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        with pytest.raises(LabError) as e:
            got = config.load()
            pytest.fail(f"accepted: {got!r}")
    msg = str(e.value)
    assert e.value.exit_code == 2, msg
    assert len(msg.splitlines()) == 1, msg
    assert field in msg, f"{msg!r} does not name {field!r}"
    return e.value


def test_defaults_load(sandbox: Path) -> None:
    # the sweep below means something only if the same sandbox loads fine without the bad value
    assert config.load().home == sandbox / "home"


@settings(max_examples=EXAMPLES)
@given(data=st.data())
def test_a_malformed_lab_variable_is_refused(sandbox: Path, data: st.DataObject) -> None:
    name, value = data.draw(bad_setting_env(sandbox / "a-file"))
    setting = name.removeprefix("LAB_").lower().split("__")
    where = setting[0] if setting[0] in ("home", "bin_cache") else ".".join(setting)
    _refused(where, **{name: value})


@settings(max_examples=EXAMPLES)
@given(data=st.data())
def test_a_malformed_lab_yaml_value_is_refused(sandbox: Path, data: st.DataObject) -> None:
    field = data.draw(st.sampled_from(YAML_FIELDS))
    value = data.draw(bad_yaml_value(field))
    top, _, sub = field.partition(".")
    doc = {top: {sub: value}} if sub else {top: value}
    path = sandbox / "given.yaml"  # not ./lab.yaml, which every later load would read
    path.write_text(yaml.safe_dump(doc))
    _refused(field, LAB_CONFIG=str(path))


_keys = st.one_of(text, st.integers(), st.booleans())
_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), text),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(text, inner, max_size=3)),
    max_leaves=8,
)


@settings(max_examples=EXAMPLES)
@given(doc=st.one_of(st.binary(max_size=200), text.map(str.encode), st.dictionaries(_keys, _values)))
def test_any_lab_yaml_loads_or_is_one_error_line(sandbox: Path, doc: bytes | dict[object, object]) -> None:
    """Whatever lab.yaml holds: Settings, or one line and exit 2; never a traceback."""
    path = sandbox / "given.yaml"  # not ./lab.yaml, which every later load would read
    path.write_bytes(doc if isinstance(doc, bytes) else yaml.safe_dump(doc, allow_unicode=True).encode())
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LAB_CONFIG", str(path))
        try:
            config.load()
        except LabError as e:
            assert e.exit_code == 2 and len(str(e).splitlines()) == 1, str(e)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"LAB_PORTS": "1", "LAB_PORTS__MGMT_ETCD": "2"}, "LAB_PORTS"),
        ({"LAB_HOME__X": "1"}, "LAB_HOME"),
        ({"LAB_PORTS__MGMT_ETCD": "2379"}, "tenant_etcd and mgmt_etcd"),
        ({"LAB_PORTS__MGMT_APISERVER": "17400"}, "stack_base's block"),
        ({"LAB_MAX_INDEX": "true"}, "max_index"),
        ({"LAB_KIND_NODE_IMAGE": ""}, "kind_node_image"),
        ({"LAB_CONFIG": "/proc/self/mem"}, "cannot read"),
    ],
)
def test_listed_clashes_and_empties(sandbox: Path, env: dict[str, str], named: str) -> None:
    _refused(named, **env)


def test_a_lab_yaml_key_with_a_newline_stays_one_line(sandbox: Path) -> None:
    path = sandbox / "given.yaml"  # not ./lab.yaml, which every later load would read
    path.write_text('"a\\nb": 1\n')
    assert "'a\\nb'" in str(_refused("invalid setting", LAB_CONFIG=str(path)))
