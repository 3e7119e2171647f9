"""notebooks/quickstart.ipynb runs end to end (a few steps, set by GAN_JAX_NOTEBOOK_STEPS)."""

from __future__ import annotations

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "quickstart.ipynb"

nbformat = pytest.importorskip("nbformat")


def _notebook():
    return nbformat.read(NOTEBOOK, as_version=4)


def _code_cells():
    return [cell for cell in _notebook().cells if cell.cell_type == "code"]


def test_stored_without_outputs():
    nbformat.validate(_notebook())
    for i, cell in enumerate(_code_cells()):
        assert not cell.outputs and cell.execution_count is None, (
            f"code cell {i} has stored outputs; clear them (e.g. `jupyter nbconvert "
            "--clear-output --inplace notebooks/quickstart.ipynb`)."
        )


def test_config_matches_configs_quickstart():
    import importlib.util

    import gan_jax

    tagged = [c for c in _code_cells() if "config" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one code cell should carry the `config` tag"
    namespace = {"gan_jax": gan_jax}
    exec(tagged[0].source, namespace)
    spec = importlib.util.spec_from_file_location("quickstart", ROOT / "configs" / "quickstart.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert namespace["config"].to_dict() == module.get_config().to_dict(), (
        "the notebook's config cell and configs/quickstart.py differ; keep them the same."
    )


def test_repository_url_matches_readme():
    readme = ROOT / "README.md"
    urls = set(re.findall(r"https://github\.com/[\w.-]+/[\w.-]+", readme.read_text()))
    if not urls:
        pytest.skip("README.md names no GitHub repository yet")
    source = "\n".join(cell.source for cell in _code_cells())
    match = re.search(r'REPO_URL = "([^"]+)"', source)
    assert match, "the install cell should define REPO_URL"
    assert match.group(1) in {u.removesuffix(".git") for u in urls}, (
        f"the notebook installs from {match.group(1)}, the README names {sorted(urls)}"
    )


# Starts a Jupyter kernel that trains two width-32 models (about a minute).
@pytest.mark.slow
def test_runs_end_to_end(tmp_path, monkeypatch):
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    pytest.importorskip("matplotlib")
    workdir = tmp_path / "run"
    monkeypatch.setenv("GAN_JAX_NOTEBOOK_STEPS", "4")
    monkeypatch.setenv("GAN_JAX_NOTEBOOK_WORKDIR", str(workdir))
    # The kernel shares the tests' persistent compilation cache (see conftest): the
    # trainer and the custom loop compile the same initialisation once, and a second
    # test run compiles nothing.
    import jax

    if jax.config.jax_compilation_cache_dir:
        monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", jax.config.jax_compilation_cache_dir)
        monkeypatch.setenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    notebook = _notebook()
    client = nbclient.NotebookClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as e:
        plain = re.sub(r"\x1b\[[0-9;]*m", "", str(e))
        pytest.fail(f"the notebook failed:\n{plain[-4000:]}", pytrace=False)

    outputs = "".join(
        out.get("text", "")
        for cell in notebook.cells
        if cell.cell_type == "code"
        for out in cell.outputs
    )
    assert "all checks passed" in outputs
    assert (workdir / "samples" / "latest.png").stat().st_size > 0
    assert (workdir / "interpolation.png").stat().st_size > 0
    assert (workdir / "custom_loop" / "4").is_dir()
    images = [
        out
        for cell in notebook.cells
        if cell.cell_type == "code"
        for out in cell.outputs
        if "image/png" in out.get("data", {})
    ]
    assert len(images) >= 5, f"expected the grids and plots inline, got {len(images)} images"
