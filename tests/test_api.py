"""The public API: the short list in tangentlens.API, each name with a docstring example
that runs (and passes) as a doctest."""

from __future__ import annotations

import doctest
import subprocess
import sys

import pytest

import tangentlens


@pytest.mark.parametrize("name", tangentlens.API)
def test_docstring_example_runs(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    obj = getattr(tangentlens, name)
    tests = doctest.DocTestFinder(recurse=False).find(obj, name, globs={})
    examples = sum(len(t.examples) for t in tests)
    assert examples >= 2, f"{name} has no docstring example"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for t in tests:
        runner.run(t)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{name}: {result.failed} of {result.attempted} examples failed"


def test_api_names_resolve_and_import_is_light():
    assert set(tangentlens.API) <= set(dir(tangentlens))
    code = ("import sys, tangentlens; heavy = [m for m in ('torch', 'transformer_lens', 'h5py', "
            "'umap', 'matplotlib') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        tangentlens.nope  # noqa: B018
