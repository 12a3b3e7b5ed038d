"""Spec loading: valid specs become dataclasses, bad ones are one line naming file and key."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from harness import paths, spec
from harness.errors import SpecError


def write(tmp_path: Path, text: str, name: str = "static/env_umask.yaml") -> Path:
    p = tmp_path / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


def load(tmp_path: Path, text: str) -> spec.Spec:
    return spec.load_spec(write(tmp_path, text), tmp_path)


def test_minimal_spec_gets_defaults(tmp_path: Path) -> None:
    s = load(tmp_path, "description: d\nfeatures: [env.umask]\n")
    assert s.name == "static/env_umask"
    assert s.flavors == ("host", "ns")
    assert s.source == paths.ZDTM / "static" / "env_umask.c"
    assert s.program == paths.build_dir() / "zdtm" / "static" / "env_umask"
    assert s.compare == spec.ASPECTS and s.timeout == 10.0 and not s.exclusive


def test_options_flags_and_expectations(tmp_path: Path) -> None:
    s = load(tmp_path, """
description: d
features: [env.umask]
options: {size: 4096, name: x, verbose: true}
flags: [crfail]
flavors: [ns]
expect:
  ckpt: {fail: "not there yet", tracking: "issue 3", flavors: [ns]}
""")
    assert s.argv()[1:] == ["--size=4096", "--name=x", "--verbose=1"]
    assert s.exclusive  # crfail implies running alone
    assert s.expectation("ckpt", "ns") and not s.expectation("ckpt", "host")
    assert not s.expectation("nocr", "ns")


def test_an_expectation_at_restore_is_not_expected_of_a_run_that_restores_nothing(tmp_path: Path) -> None:
    s = load(tmp_path, """
description: d
features: [env.umask]
expect:
  ckpt: {fail: "comes back wrong", at: restore}
  criu: {fail: "refused", at: dump}
""")
    assert s.expectation("ckpt", "host") and not s.expectation("ckpt", "host", restored=False)
    assert s.expectation("criu", "host", restored=False)


def test_transition_specs_compare_nothing_by_default(tmp_path: Path) -> None:
    p = write(tmp_path, "description: d\nfeatures: [transition.fork_loop]\nprogram: ../static/env_umask\n",
              "transition/t.yaml")
    (tmp_path / "static").mkdir(exist_ok=True)
    exe = tmp_path / "static" / "env_umask"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    s = spec.load_spec(p, tmp_path)
    assert s.compare == () and s.program == exe and s.source is None and s.timeout == 30.0


@pytest.mark.parametrize("text, key, words", [
    ("description: d\nfeatures: [env.umask]\ncolour: red\n", "colour", "unknown key"),
    ("description: d\nfeatures: [env.nonesuch]\n", "features", "unknown feature"),
    ("description: d\nfeatures: env.umask\n", "features", "expected a list"),
    ("description: d\nfeatures: [env.umask]\ntimeout: soon\n", "timeout", "positive number"),
    ("description: d\nfeatures: [env.umask]\nflavors: [moon]\n", "flavors", "unknown flavor"),
    ("description: d\nfeatures: [env.umask]\nneeds: [warp]\n", "needs", "unknown need"),
    ("description: d\nfeatures: [env.umask]\nprogram: nonesuch\n", "program", "expected a C source"),
    ("description: d\nfeatures: [env.umask]\nprogram: ./missing-binary\n", "program", "executable"),
    ("description: d\nfeatures: [env.umask]\nexpect: {ckpt: {tracking: x}}\n", "expect.ckpt.fail", "reason"),
    ("description: d\nfeatures: [env.umask]\nexpect: {ckpt: {fail: x, at: later}}\n", "expect.ckpt.at", "step"),
    ("features: [env.umask]\n", "description", "non-empty string"),
])
def test_bad_spec_names_file_and_key(tmp_path: Path, text: str, key: str, words: str) -> None:
    with pytest.raises(SpecError) as e:
        load(tmp_path, text)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(str(tmp_path / "static" / "env_umask.yaml"))
    assert f"key '{key}'" in msg and words in msg


def test_yaml_syntax_error_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"not valid YAML at line [23]"):
        load(tmp_path, "description: d\nfeatures: [env.umask\n")


def test_duplicate_names_across_directories(tmp_path: Path) -> None:
    write(tmp_path, "description: d\nfeatures: [env.umask]\n")
    with pytest.raises(SpecError, match="also defined by"):
        spec.load_all([tmp_path, tmp_path])


def test_every_bundled_spec_is_valid_and_every_feature_is_covered() -> None:
    specs = spec.load_all([paths.SPECS])
    features = spec.load_features()
    assert len(specs) >= 10
    covered = {f for s in specs for f in s.features}
    assert covered <= set(features)


def test_a_failure_at_another_step_than_declared_stays_a_failure(tmp_path: Path) -> None:
    from harness.verdict import Result, Verdict, settle

    s = load(tmp_path, "description: d\nfeatures: [env.umask]\nexpect:\n  ckpt: {fail: 'locks lost', at: verify}\n")
    res = Result(test=s.name, flavor="host", engine="ckpt", verdict=Verdict.FAIL, step="dump", reason="refused")
    got = settle(res, s)
    assert got.verdict is Verdict.FAIL and "expects a failure at verify, not at dump" in got.reason
    assert settle(replace(res, step="verify"), s).verdict is Verdict.XFAIL
    assert settle(replace(res, verdict=Verdict.PASS, step=""), s).verdict is Verdict.XPASS
    # Left running (nothing restored), a pass is simply a pass.
    assert settle(replace(res, verdict=Verdict.PASS, step=""), s, restored=False).verdict is Verdict.PASS
