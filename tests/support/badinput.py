"""The bad-input contract, shared by the no-stack sweep (tests/integration/test_bad_input_home.py) and
the one against a running stack (tests/e2e/test_bad_input_stack.py).

Every malformed argument or setting must end as exactly one `error:` line on stderr, nothing on
stdout, exit 2 (exit != 0 for a well-formed name of something that does not exist), no traceback,
and nothing changed: the lab home's tree (paths, sizes, mtimes) is compared before and after.

The cases are listed here once (a line per input a user could type) and generated (hypothesis
strategies below); the strategies only make values that are wrong, so a case that passes
validation shows up as a wrong exit code or a changed tree, never as a silent success.
"""

from __future__ import annotations

import math
import os
import re
import string
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import strategies as st

from lab import build, tuning
from lab.config import Settings

#: Environment that makes an accepted bad input fail fast instead of building or reaching out:
#: `go` cannot run (a build would take an hour) and no module is downloaded.
SAFETY_ENV = {"GOROOT": "/nonexistent", "GOPROXY": "off", "GOTOOLCHAIN": "local", "COLUMNS": "200"}

#: An address nothing answers on quickly: ssh to port 9 of loopback is refused at once.
NO_HOST = ["--host", "127.0.0.1", "--ssh-port", "9"]

Tree = dict[str, tuple[str, int, int]]


def tree(root: Path, skip: Callable[[str], bool] = lambda _rel: False) -> Tree:
    """Every path under root -> (type, size, mtime_ns); `skip(relpath)` drops
    paths that change by themselves (a running stack's logs and data)."""
    out: Tree = {}
    for dirpath, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            p = Path(dirpath, name)
            rel = str(p.relative_to(root))
            if skip(rel):
                if name in dirs:
                    dirs.remove(name)
                continue
            st_ = p.lstat()
            if p.is_dir() and not p.is_symlink():
                # a directory by presence only: its mtime moves when a file comes and goes, which
                # SQLite's -wal/-shm files do on every read; what came and stayed is a path here.
                out[rel] = ("d", 0, 0)
            else:
                out[rel] = ("f", st_.st_size, st_.st_mtime_ns)
    return out


def tree_diff(before: Tree, after: Tree) -> list[str]:
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    changed = sorted(k for k in set(before) & set(after) if before[k] != after[k])
    return [f"+{k}" for k in added] + [f"-{k}" for k in removed] + [f"~{k}" for k in changed]


def refusal_problems(code: int, stdout: str, stderr: str, expect: int | None = 2) -> list[str]:
    """What breaks the contract in one result; empty when it is a clean refusal.
    expect None: any non-zero exit (a well-formed name of something that is not there)."""
    problems = []
    if code == 0 if expect is None else code != expect:
        problems.append(f"exit {code}, wanted {expect or 'non-zero'}")
    lines = stderr.splitlines()
    if len(lines) != 1 or not lines[0].startswith("error: "):
        problems.append(f"stderr is not one 'error:' line: {stderr[-1500:]!r}")
    if "Traceback" in stderr:
        problems.append("traceback on stderr")
    if stdout:
        problems.append(f"stdout not empty: {stdout[:300]!r}")
    return problems


@dataclass(frozen=True)
class Case:
    """One bad input: argv, the LAB_* (or other) variables it sets, and the exit code it must get."""

    args: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    expect: int | None = 2
    #: a lab.yaml body for LAB_CONFIG (bytes: written as is)
    lab_yaml: str | bytes | None = None

    @property
    def id(self) -> str:
        env = " ".join(f"{k}={v!r}" for k, v in self.env.items())
        conf = " LAB_CONFIG=<file>" if self.lab_yaml is not None else ""
        return f"{env}{conf} lab {' '.join(repr(a) if not a or ' ' in a else a for a in self.args)}".strip()


def c(line: str, expect: int | None = 2, lab_yaml: str | bytes | None = None, **env: str) -> Case:
    import shlex

    return Case(tuple(shlex.split(line)), env, expect, lab_yaml)


#: Every command's arguments, malformed. Inputs that would reach a remote or a build if accepted
#: carry NO_HOST or SAFETY_ENV guards, so a regression fails fast.
ARGS: list[Case] = [
    # create-clusters
    c("create-clusters"),
    c("create-clusters abc"),
    c("create-clusters -1"),
    c("create-clusters 0"),
    c("create-clusters 1.5"),
    c("create-clusters 1 --start 0"),
    c("create-clusters 1 --start -5"),
    c("create-clusters 2 --start 9999"),
    c("create-clusters 100000000000000000000000"),
    c("create-clusters 1 --parallel 0"),
    c("create-clusters 1 --timeout 0"),
    c("create-clusters 1 --timeout nan"),
    c("create-clusters 1 --timeout inf"),
    c("create-clusters 1 --backing ''"),
    c("create-clusters 1 --backing BAD_NAME"),
    c("create-clusters 1 -o xml"),
    c("create-clusters 1 --wait=no"),
    # delete-clusters
    c("delete-clusters"),
    c("delete-clusters --start 1"),
    c("delete-clusters --all --start 1"),
    c("delete-clusters --all --count 2"),
    c("delete-clusters --count 0"),
    c("delete-clusters --count 1 --start 0"),
    c("delete-clusters --count 1 --start 9999999"),
    c("delete-clusters --count x"),
    c("delete-clusters --all --timeout nan"),
    c("delete-clusters --all --timeout -1"),
    c("delete-clusters 5"),
    # upgrade-clusters
    c("upgrade-clusters --all"),
    c("upgrade-clusters --all --to 1.36.0"),
    c("upgrade-clusters --all --to v1.37.0"),
    c("upgrade-clusters --start 1 --count 1 --to v1.36.0-rc.0"),
    c("upgrade-clusters --to v1.36.0"),
    c("upgrade-clusters --all --to v1.36.0 --timeout nan"),
    # create-hosts, delete-hosts
    c("create-hosts"),
    c("create-hosts 0"),
    c("create-hosts -3"),
    c("create-hosts 1 --start 0"),
    c("create-hosts 2 --start 9999"),
    c("create-hosts 1 --state ready"),
    c("create-hosts 1 --timeout nan"),
    c("delete-hosts"),
    c("delete-hosts --start 1"),
    c("delete-hosts --all --start 1"),
    c("delete-hosts --count 0"),
    c("delete-hosts --all --timeout 0"),
    # render
    c("render"),
    c("render abc"),
    c("render ''"),
    c("render 1.5"),
    c("render -1"),
    c("render 0"),
    c("render 1_000"),
    c("render ٣"),
    c("render 99999999999999999999999"),
    c("render 1 --count 0"),
    c("render 1 -n -3"),
    c("render 1 --count x"),
    c("render 1 -o xml"),
    # kubeconfig
    c("kubeconfig BAD"),
    c("kubeconfig ''"),
    c("kubeconfig ../../etc"),
    c("kubeconfig test-1 extra"),
    c("kubeconfig test-424242", expect=None),
    # tune
    c("tune"),
    c("tune --profile ''"),
    c("tune --profile turbo"),
    c("tune --profile seed -o xml"),
    # build
    c("build nosuch"),
    c("build ''"),
    Case(("build", "--", "\r")),  # a line break in a quoted name: found by the generated sweep
    c("build etcd nosuch"),
    c("build --list -o xml"),
    c("build --list nosuch"),
    c("build --patch /nonexistent/x.patch"),
    c("build kcp-manager --patch /nonexistent/x.patch"),
    c("build kcp-manager --patch ''"),
    c("build kcp-manager --patch /tmp"),
    # images build: refused before the engine is asked (none is reachable at this DOCKER_HOST)
    c("images build nosuch", DOCKER_HOST="unix:///nonexistent/docker.sock"),
    c("images build ''", DOCKER_HOST="unix:///nonexistent/docker.sock"),
    c("images build ipam nosuch", DOCKER_HOST="unix:///nonexistent/docker.sock"),
    c("images build --list nosuch"),
    c("images build --list -o xml"),
    # engine: usage errors only (a valid one would start a dockerd)
    c("engine start --dir"),
    c("engine stop extra"),
    # backing add / list / remove
    c("backing add"),
    c(f"backing add BAD {' '.join(NO_HOST)}"),
    c("backing add x"),
    c("backing add x --host a --kubeconfig /etc/hostname"),
    c("backing add x --host ''"),
    c(f"backing add x {' '.join(NO_HOST)} --user ''"),
    c(f"backing add x {' '.join(NO_HOST)} --capacity 0"),
    c(f"backing add x {' '.join(NO_HOST)} --capacity -5"),
    c(f"backing add x {' '.join(NO_HOST)} --timeout nan"),
    c(f"backing add x {' '.join(NO_HOST)} --runtime docker"),
    c(f"backing add x {' '.join(NO_HOST)} --runtime kind"),
    c("backing add x --kubeconfig /etc/hostname --runtime mux"),
    c(f"backing add x {' '.join(NO_HOST)} --node-ports 30000-30099"),
    c("backing add x --host 127.0.0.1 --ssh-port 0"),
    c("backing add x --host 127.0.0.1 --ssh-port 70000"),
    c("backing add x --host 127.0.0.1 --identity /nonexistent"),
    c("backing add x --kubeconfig /nonexistent"),
    c("backing add x --kubeconfig /etc/hostname"),
    c("backing add x --kubeconfig /etc/hostname --node-ports abc"),
    c("backing add x --kubeconfig /etc/hostname --etcd-node-port 0"),
    c("backing add x --kubeconfig /etc/hostname --node-address ''"),
    c("backing list -o xml"),
    c("backing remove"),
    c("backing remove BAD"),
    c("backing remove local"),
    c("backing remove nosuch", expect=None),
    # report, status, doctor, etcd
    c("report --run abc"),
    c("report --run 0"),
    c("report --run -1"),
    c("report --run 424242", expect=None),
    c("report --format csv"),
    c("report --batch 0"),
    c("report --plot ''"),
    c("report --plot .."),  # a directory; relative, so a regression writes inside the sandbox
    c("report --check /nonexistent/gates.yaml", expect=None),  # exit 1 without runs, 2 with
    c("report --check gates.yaml --plot p.png"),
    c("report --compare 1"),
    c("report --compare a b"),
    c("report --compare 1 2 --run 1"),
    c("report --compare 1 2 --check gates.yaml"),
    c("report --compare 424242 424243", expect=None),
    # bench
    c("bench"),
    c("bench --profile default --clusters 2"),
    c("bench --profile default --profile default --clusters 2"),
    c("bench --profile default --profile turbo --clusters 2"),
    c("bench --profile default --profile high --clusters 0"),
    c("bench --profile default --profile high --clusters 2 --repeat 0"),
    c("bench --profile default --profile high --clusters 2 --start 0"),
    c("bench --profile default --profile high --clusters 2 --timeout nan"),
    c("bench --profile default --profile high --clusters 2 --format csv"),
    c("report --html ''"),
    c("report --html .."),  # a directory, as --plot
    c("status -o xml"),
    c("status extra"),
    c("doctor --mode vm"),
    c("doctor --mode ''"),
    c("etcd tenants -o xml"),
    c("etcd nosuch"),
    # up / down
    c("up --mode vm"),
    c("up --mode ''"),
    c("up --tuning turbo"),
    c("up --tuning ''"),
    c("up --shards 0"),
    c("up --shards -1"),
    c("up --shards 6"),
    c("up --shards 100000000000000000000"),
    c("up --shards two"),
    c("up --shards ''"),
    c("down extra"),
    c("down --purge=maybe"),
    # the host side of a process backing
    c("host log ../x"),
    c("host remove ok ../../x"),
    c("host ensure nocolon --address 127.0.0.1 --no-tar"),
    c("host ensure test-1:0 --address 127.0.0.1 --no-tar"),
    c("host ensure test-1:² --address 127.0.0.1 --no-tar"),
    c("host mux-remove ok ../../x"),
    c("host mux-ensure nocolon --address 127.0.0.1 --no-tar"),
    c("host mux-ensure test-1:70000 --address 127.0.0.1 --no-tar"),
    c("host mux-ensure test-1:20001 --no-tar"),
    c("host mux-up"),
    c("host mux-list extra"),
    c("nosuch"),
]

#: The command a settings case runs: it writes the lab home (a new cluster's PKI) if the settings
#: were wrongly accepted, so an accepted setting shows as a changed tree as well as exit 0.
SETTINGS_CMD = "render 2"

_FIELDS = {
    "LAB_PREFIX": ["", "Test", "1abc", "a_b", "a-", "a" * 31, "tést"],
    "LAB_MAX_INDEX": ["abc", "0", "-1", "65001", "1.5", "", "true"],
    "LAB_MODE": ["vm", "", "LOCAL"],
    "LAB_LOCAL_CAPACITY": ["-1", "0", "many"],
    "LAB_KIND_NODES": ["0", "8"],
    "LAB_KIND_NODE_IMAGE": [""],
    "LAB_HOME": ["", " ", "/etc/hostname", "/etc/hostname/sub"],
    "LAB_BIN_CACHE": ["", "/etc/hostname"],
    "LAB_PORTS__TENANT_ETCD": ["0", "65536", "-1", "abc", "80.5"],
    "LAB_PORTS__MGMT_APISERVER": ["99999", "2379"],
    "LAB_PORTS__MGMT_ETCD": ["17401"],
    "LAB_PORTS__STACK_BASE": ["65500", "0"],
    "LAB_VERSIONS__CAPI": ["1.2.3", "v1.2", "latest", ""],
    "LAB_VERSIONS__KUBERNETES": ["v1.35"],
    "LAB_VERSIONS__NOSUCH": ["v1.0.0"],
    "LAB_PORTS__NOSUCH": ["1"],
    "LAB_PORTS": ["x"],
    "LAB_VERSIONS": [""],
    "LAB_VERSIONS__CAPI__X": ["1"],
}

#: Every lab.yaml / LAB_* setting, malformed: wrong types, out-of-range ports, negative capacity,
#: bad prefix names, and lab.yaml files that cannot be read or are not a mapping of settings.
SETTINGS: list[Case] = [
    *(c(SETTINGS_CMD, **{k: v}) for k, values in _FIELDS.items() for v in values),
    c(SETTINGS_CMD, LAB_PORTS="1", LAB_PORTS__MGMT_ETCD="2"),
    c(SETTINGS_CMD, LAB_HOME__X="1"),
    c(SETTINGS_CMD, LAB_CONFIG="/nonexistent/lab.yaml"),
    c(SETTINGS_CMD, LAB_CONFIG="/tmp"),
    c(SETTINGS_CMD, LAB_CONFIG="/proc/self/mem"),
    c(SETTINGS_CMD, lab_yaml="a: [\n"),
    c(SETTINGS_CMD, lab_yaml="- 1\n- 2\n"),
    c(SETTINGS_CMD, lab_yaml="just a string\n"),
    c(SETTINGS_CMD, lab_yaml=b"\xff\xfe\x00p\x00"),
    c(SETTINGS_CMD, lab_yaml="[" * 5000),
    c(SETTINGS_CMD, lab_yaml="!!python/object/apply:os.system ['true']\n"),
    c(SETTINGS_CMD, lab_yaml='"a\\nb": 1\n'),
    c(SETTINGS_CMD, lab_yaml="ports: 5\n"),
    c(SETTINGS_CMD, lab_yaml="ports:\n  tenant_etcd: 0\n"),
    c(SETTINGS_CMD, lab_yaml="ports:\n  tenant_etcd: [2379]\n"),
    c(SETTINGS_CMD, lab_yaml="ports:\n  mgmt_etcd: 2379\n"),
    c(SETTINGS_CMD, lab_yaml="versions:\n  capi: 1.5\n"),
    c(SETTINGS_CMD, lab_yaml="prefix: 123\n"),
    c(SETTINGS_CMD, lab_yaml="prefix: null\n"),
    c(SETTINGS_CMD, lab_yaml="max_index: true\n"),
    c(SETTINGS_CMD, lab_yaml="local_capacity: -10\n"),
    c(SETTINGS_CMD, lab_yaml="local_capacity: 2.5\n"),
    c(SETTINGS_CMD, lab_yaml="mode: [local]\n"),
    c(SETTINGS_CMD, lab_yaml="bin_cache: ''\n"),
    c(SETTINGS_CMD, lab_yaml="patches: ''\n"),
    c(SETTINGS_CMD, lab_yaml="patches: [a]\n"),
    c(SETTINGS_CMD, lab_yaml="nosuch: 1\n"),
]


# --- generated ------------------------------------------------------------------------------------

_DNS_LABEL = re.compile(r"[a-z]([a-z0-9-]{0,61}[a-z0-9])?")
#: what cluster and backing names may be (lab.pki, lab.backing): a label that may start with a digit
_NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_SEMVER = re.compile(r"v\d+\.\d+\.\d+")

#: Text a command line or an environment variable can hold (no NUL, no lone surrogates).
text = st.text(alphabet=st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=40)


def _not_int(t: str) -> bool:
    # Not an int by any reading (click's, pydantic's, int()'s): holds a letter or a symbol.
    return re.search(r"[^\d\s+\-_.eE]", t) is not None or t.strip() == ""


non_int = text.filter(_not_int)
bad_name = text.filter(lambda t: not _NAME.fullmatch(t))


def bad_int(lo: int, hi: int | None = None) -> st.SearchStrategy[str]:
    """Text for an int argument or setting that must lie in [lo, hi]: out of range, or no int."""
    above = st.nothing() if hi is None else st.integers(min_value=hi + 1).map(str)
    return st.one_of(st.integers(max_value=lo - 1).map(str), above, non_int)


def good_int(lo: int, hi: int) -> st.SearchStrategy[str]:
    return st.integers(lo, hi).map(str)


bad_timeout = st.one_of(
    st.sampled_from(["nan", "NaN", "inf", "-inf", "Infinity", "0", "-0.0"]),
    st.floats(max_value=0, allow_nan=False).map(repr),
    non_int,
)


@st.composite
def bad_range_args(draw: st.DrawFn, max_index: int = Settings().max_index) -> list[str]:
    """create-clusters / delete-clusters / render with at least one slot wrong."""
    cmd = draw(st.sampled_from(["create-clusters", "delete-clusters", "render"]))
    slots = {
        "count": (bad_int(1, max_index), good_int(1, 3)),
        "start": (bad_int(1, max_index), good_int(1, max_index - 3)),
        "timeout": (bad_timeout, st.sampled_from(["1", "30.5"])),
        "parallel": (bad_int(1), good_int(1, 20)),
    }
    used = {"render": ["start", "count"], "delete-clusters": ["start", "count", "timeout"]}.get(
        cmd, ["count", "start", "timeout", "parallel"]
    )
    bad = draw(st.lists(st.sampled_from(used), min_size=1, unique=True))
    vals = {s: draw(slots[s][0] if s in bad else slots[s][1]) for s in used}
    if cmd == "render":
        return ["render", "--", vals["start"], "--count", vals["count"]]
    if cmd == "delete-clusters":
        return [cmd, f"--start={vals['start']}", f"--count={vals['count']}", f"--timeout={vals['timeout']}"]
    return [
        cmd,
        f"--start={vals['start']}",
        f"--timeout={vals['timeout']}",
        f"--parallel={vals['parallel']}",
        "--",
        vals["count"],
    ]


@st.composite
def bad_name_args(draw: st.DrawFn) -> list[str]:
    """A name-taking command with a name that is no DNS label, or no known target/profile/mode."""
    name = draw(bad_name)
    choices: list[tuple[list[str], Iterable[str]]] = [
        (["kubeconfig", "--", name], ()),
        (["backing", "remove", "--", name], ()),
        (["backing", "add", *NO_HOST, "--", name], ()),
        (["create-clusters", "1", f"--backing={name}"], ()),
        (["host", "log", "--", name], ()),
        (["host", "remove", "--", "ok", name], ()),
        (["host", "ensure", "--address=127.0.0.1", "--no-tar", "--", f"{name}:80"], ()),
        (
            ["host", "ensure", "--address=127.0.0.1", "--no-tar", "--", f"test-1:{draw(bad_int(1, 65535))}"],
            (),
        ),
        (["up", f"--shards={draw(bad_int(1, 5))}"], ()),
    ]
    word = draw(text)
    choices += [
        (["build", "--", word], build.TARGETS),
        (["tune", f"--profile={word}"], tuning.PROFILES),
        (["up", f"--tuning={word}"], tuning.PROFILES),
        (["up", f"--mode={word}"], ("local", "kind")),
        (["doctor", f"--mode={word}"], ("local", "kind")),
    ]
    args, valid = draw(st.sampled_from(choices))
    if args[0] in ("build", "tune", "up", "doctor") and word in valid:
        args = [*args[:-1], args[-1] + "x"]  # a known name is not bad input: make it unknown
    return args


#: Environment variables of every setting, with a generator of wrong values for each.
def bad_setting_env(existing_file: Path) -> st.SearchStrategy[tuple[str, str]]:
    ports = [f"LAB_PORTS__{p.upper()}" for p in ("tenant_etcd", "tenant_etcd_peer", "mgmt_etcd")]
    ports += ["LAB_PORTS__MGMT_ETCD_PEER", "LAB_PORTS__MGMT_APISERVER"]
    per_field: list[tuple[str, st.SearchStrategy[str]]] = [
        ("LAB_PREFIX", text.filter(lambda t: not (_DNS_LABEL.fullmatch(t) and len(t) <= 30))),
        ("LAB_MAX_INDEX", bad_int(1, 65000)),
        ("LAB_LOCAL_CAPACITY", bad_int(1, 65000)),
        ("LAB_KIND_NODES", bad_int(1, 7)),
        ("LAB_MODE", text.filter(lambda t: t not in ("local", "kind"))),
        ("LAB_PORTS__STACK_BASE", bad_int(1, 65535 - 40)),
        *((p, bad_int(1, 65535)) for p in ports),
        *(
            (f"LAB_VERSIONS__{k.upper()}", text.filter(lambda t: not _SEMVER.fullmatch(t)))
            for k in Settings().versions.model_dump()
        ),
        ("LAB_HOME", st.one_of(st.just(""), text.map(lambda t: f"{existing_file}/{t}"))),
        ("LAB_BIN_CACHE", st.one_of(st.just(" "), text.map(lambda t: f"{existing_file}/{t}"))),
        ("LAB_PATCHES", st.one_of(st.just(" "), text.map(lambda t: f"{existing_file}/{t}"))),
    ]
    known_ports = set(Settings().ports.model_dump())
    # one name segment: "__" would nest (LAB_PORTS____ is ports."".""), and an edge "_" joins the
    # separator (hypothesis found both)
    unknown = st.text(string.ascii_uppercase + "_", min_size=1, max_size=12).filter(
        lambda k: (
            k.lower() not in known_ports and "__" not in k and not k.startswith("_") and not k.endswith("_")
        )
    )
    return st.one_of(
        *(st.tuples(st.just(k), v) for k, v in per_field),
        st.tuples(unknown.map(lambda k: f"LAB_PORTS__{k}"), good_int(1024, 60000)),
    )


def yaml_scalar_or_list() -> st.SearchStrategy[object]:
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=True),
        text,
    )
    return st.recursive(scalars, lambda inner: st.lists(inner, max_size=3), max_leaves=5)


def bad_yaml_value(field_: str) -> st.SearchStrategy[object]:
    """A lab.yaml value that is wrong for the top-level setting or port `field_` whatever its type."""
    if field_.startswith("ports."):
        return yaml_scalar_or_list().filter(
            lambda v: (
                not (isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 65535)
                and not (isinstance(v, float) and v.is_integer() and 1 <= v <= 65535)
                and not (isinstance(v, str) and v.strip().lstrip("+-").isdigit())
            )
        )
    if field_ in ("max_index", "local_capacity", "kind_nodes"):
        hi = 7 if field_ == "kind_nodes" else 65000
        return yaml_scalar_or_list().filter(
            lambda v: (
                not (isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= hi)
                and not (isinstance(v, float) and math.isfinite(v) and v.is_integer() and 1 <= v <= hi)
                and not (isinstance(v, str) and v.strip().lstrip("+-").isdigit())
            )
        )
    if field_ == "prefix":
        return yaml_scalar_or_list().filter(
            lambda v: not (isinstance(v, str) and _DNS_LABEL.fullmatch(v) and len(v) <= 30)
        )
    if field_ == "mode":
        return yaml_scalar_or_list().filter(lambda v: v not in ("local", "kind"))
    return yaml_scalar_or_list().filter(lambda v: not (isinstance(v, str) and _SEMVER.fullmatch(v)))


YAML_FIELDS = [
    "prefix",
    "max_index",
    "local_capacity",
    "kind_nodes",
    "mode",
    *(f"ports.{p}" for p in Settings().ports.model_dump()),
    *(f"versions.{v}" for v in Settings().versions.model_dump()),
]
