"""Fuzz the scenario loader and ``--set`` (issue 11): YAML trees mutated from the repository's
scenarios/*.yaml, random overrides and hostile output paths, run through ``cli.main(["solve",
..., "--check"])`` (load and check only). Whatever the input, the CLI must exit 0 or 2 (never 1:
an internal error, i.e. an uncaught exception), say why in one line on exit 2, and write no file
at all (``--check`` writes nothing; the output it announces for a default name lies in results/).

Examples are bounded (``PROXFLOW_FUZZ_EXAMPLES``, default 150) and derandomized, so the fast
suite is deterministic; set the variable higher (and PROXFLOW_FUZZ_RANDOM=1) to search further.
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # cli.py lives at the repository root
    sys.path.insert(0, str(REPO))

import cli  # noqa: E402

# keys in reverse order: hypothesis favours the first entries, and `name` (first in every file)
# would soak up most mutations
TREES = [(p.name, dict(reversed(yaml.safe_load(p.read_text()).items())))
         for p in sorted((REPO / "scenarios").glob("*.yaml"))]
#: stands for a 5001-digit integer (more digits than int() converts); replaced after dumping
BIG = "__BIG_INT__"
BIG_TEXT = "1" * 5001


def _keys(node: Any) -> set[str]:
    if isinstance(node, dict):
        return {str(k) for k in node} | {k for v in node.values() for k in _keys(v)}
    if isinstance(node, list):
        return {k for v in node for k in _keys(v)}
    return set()


KEYS = sorted(set().union(*(_keys(t) for _, t in TREES)) | {"kind", "path", "dataset", "output",
                                                             "resume", "checkpoint", "device"})
STRINGS = ["", ".", "..", "../escape", "../../up/x", "/tmp/abs/x", "a/b", "a\\b", ".hidden",
           "-x", "x" * 300, "nan", ".inf", "-.inf", "1e999", "0x10", "~", "null", "[1, 2",
           "{a: 1}", "pts.h5", "scenario.yaml", "adir", "afile", "/dev/null", "gaussian",
           "samples", "mixture", "dataset", "pinwheel", "kl", "fixed", "grid", "neural",
           "particle", "cuda", "é", "\x00", "a\nb", BIG]
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 6), st.integers(-(2**70), 2**70),
    st.just(10**400), st.floats(), st.floats(-1e3, 1e3), st.sampled_from(STRINGS),
    st.text(max_size=8),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.sampled_from(KEYS), inner, max_size=3)),
    max_leaves=8,
)
SAMPLES_PATHS = ["pts.h5", "missing.h5", "../pts.h5", "scenario.yaml", "adir", "/dev/null",
                 "x" * 5000, BIG]
OUTS = [None, "r.h5", "scenario.yaml", "pts.h5", "newdir/", "adir", "afile/x.h5",
        "sub/new/r.h5", "/proc/x.h5", "", ".", "../outside.h5"]


def near(value: Any) -> st.SearchStrategy[Any]:
    """Values close to ``value``, which reach past the type checks into the range and
    consistency checks: scaled, negated, zero, huge, non-finite, the other numeric type, a
    string of it; lists shortened or lengthened; any value, now and then."""
    options: list[st.SearchStrategy[Any]] = [VALUES]
    if isinstance(value, bool):
        options.append(st.sampled_from([not value, 0, 1, "yes"]))
    elif isinstance(value, int | float):
        try:  # (a huge integer put here by an earlier mutation has no float)
            scaled = [value * 1e-9, value * 1e9, value * 1e300, float(value), int(value)]
        except (OverflowError, ValueError):
            scaled = []
        options.append(st.sampled_from(
            [0, -value, *scaled, str(value), float("nan"), float("inf"), 10**400, BIG, 1e-320]))
    elif isinstance(value, str):
        options.append(st.sampled_from(STRINGS))
    elif isinstance(value, list) and value:
        options.append(st.sampled_from([value[:-1], [*value, value[-1]], value * 3, []]))
        options.append(st.lists(near(value[0]), min_size=1, max_size=4))
    return st.one_of(*options)


def _slots(node: Any) -> list[tuple[Any, Any]]:
    """(container, key or index) of every value in the tree."""
    found: list[tuple[Any, Any]] = []
    items = node.items() if isinstance(node, dict) else enumerate(node) \
        if isinstance(node, list) else ()
    for key, value in items:
        found.append((node, key))
        found.extend(_slots(value))
    return found


def _paths(node: Any, prefix: str = "") -> list[str]:
    """Dotted paths of the tree (list entries by index), as ``--set`` takes them."""
    found: list[str] = []
    items = node.items() if isinstance(node, dict) else enumerate(node) \
        if isinstance(node, list) else ()
    for key, value in items:
        path = f"{prefix}{key}"
        found.append(path)
        found.extend(_paths(value, path + "."))
    return found


def mutate(root: dict[str, Any], data: st.DataObject) -> None:
    """One random edit of the tree under ``root["doc"]``: replace, delete, add a field, or make
    the source/target a samples file."""
    op = data.draw(st.sampled_from(["replace", "replace", "delete", "add", "samples"]))
    slots = _slots(root)
    if op == "samples":
        doc = root["doc"]
        if isinstance(doc, dict):
            doc[data.draw(st.sampled_from(["source", "target"]))] = {
                "kind": "samples", "path": data.draw(st.sampled_from(SAMPLES_PATHS)),
                "dataset": data.draw(st.sampled_from(["x", "y", "", "x/y", "bad"]))}
        return
    if op == "add":
        dicts = [c[k] for c, k in slots if isinstance(c[k], dict)]
        if dicts:
            target = data.draw(st.sampled_from(dicts))
            target[data.draw(st.sampled_from(KEYS))] = data.draw(VALUES)
        return
    inner = [(c, k) for c, k in slots if c is not root] or slots  # the whole doc: rarely
    container, key = data.draw(st.sampled_from(inner if data.draw(st.integers(0, 19)) else slots))
    if op == "delete" and container is not root:
        del container[key]
    else:
        container[key] = data.draw(near(container[key]))


def override(data: st.DataObject, doc: Any) -> str:
    """``path=value`` with a path of the tree or a random one, and any YAML (or non-YAML) text."""
    paths = _paths(doc) or ["name"]
    kind = data.draw(st.integers(0, 9))
    path = data.draw(st.sampled_from(paths) if kind < 7 else st.sampled_from(KEYS)
                     if kind < 9 else st.text(max_size=10))
    current: Any = doc
    for part in path.split("."):  # the value now at ``path``, if any
        try:
            current = current[int(part) if isinstance(current, list) else part]
        except (KeyError, IndexError, ValueError, TypeError):
            current = None
            break
    value = data.draw(st.one_of(
        near(current).map(lambda v: yaml.safe_dump(v, default_flow_style=True).strip()
                          .removesuffix("...").strip()),
        st.sampled_from(STRINGS), st.text(max_size=12)))
    sep = data.draw(st.sampled_from(["="] * 9 + [""]))
    return f"{path}{sep}{value}".replace(BIG, BIG_TEXT)


def snapshot(root: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(root.rglob("*"))}


def prepare(root: Path, text: str) -> Path:
    work = root / "work"
    work.mkdir()
    (work / "scenario.yaml").write_text(text)
    with h5py.File(work / "pts.h5", "w") as f:
        f["x"] = np.random.default_rng(0).normal(size=(40, 2))
    (work / "adir").mkdir()
    (work / "afile").write_text("a file")
    return work


EXAMPLES = int(os.environ.get("PROXFLOW_FUZZ_EXAMPLES", "150"))


@settings(max_examples=EXAMPLES, deadline=None, database=None,
          derandomize=os.environ.get("PROXFLOW_FUZZ_RANDOM") != "1",
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_mutated_scenarios_exit_0_or_2_and_write_nothing(data: st.DataObject) -> None:
    _, tree = data.draw(st.sampled_from(TREES))
    root = {"doc": copy.deepcopy(tree)}
    for _ in range(data.draw(st.integers(0, 2))):
        mutate(root, data)
    text = yaml.safe_dump(root["doc"], allow_unicode=True).replace(BIG, BIG_TEXT)
    sets = [f"--set={override(data, root['doc'])}"
            for _ in range(data.draw(st.integers(0, 2)))]
    out = data.draw(st.sampled_from(OUTS))
    argv = ["solve", "scenario.yaml", *sets, "--check", "--quiet"]
    if out is not None:
        argv.append(f"--out={out}")
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        work = prepare(base, text)
        before = snapshot(base)
        stdout, stderr = io.StringIO(), io.StringIO()
        cwd = os.getcwd()
        os.chdir(work)
        try:
            with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
                rc = cli.main(argv)  # argv is well formed: argparse has nothing to refuse
        finally:
            os.chdir(cwd)
        err = stderr.getvalue()
        assert rc in (0, 2), (rc, argv, text[:2000], err)
        assert "Traceback" not in err and "internal" not in err, (argv, err)
        if rc == 2:
            assert len(err.strip().splitlines()) == 1 and err.startswith("error: "), err
        assert snapshot(base) == before, (argv, text[:2000])
        if rc == 0 and out is None and "output" not in text and not any("output" in s
                                                                        for s in sets):
            announced = Path(stdout.getvalue().rsplit("written to ", 1)[1].strip())
            assert announced.parent == Path("results"), announced
