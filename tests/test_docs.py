"""The documentation runs: docstring examples of the public API, the README snippet,
docs/extending.md's code, and a config reference that matches gan_jax/config.py."""

from __future__ import annotations

import doctest
import inspect
import pathlib
import re

import numpy as np
import pytest

import gan_jax
from gan_jax import config_doc

ROOT = pathlib.Path(__file__).resolve().parents[1]
SNIPPET = ROOT / "examples" / "readme_snippet.py"

# Public functions whose docstrings have no runnable example yet. Shrink this set as
# examples are added; the test below fails when it is out of date in either direction.
LACKING_EXAMPLES: set[str] = set()


def public_objects() -> dict[str, object]:
    """Every name in `gan_jax.__all__`, with the `metrics` subpackage's names as `metrics.x`."""
    found = {}
    for name in gan_jax.__all__:
        obj = getattr(gan_jax, name)
        if inspect.ismodule(obj):
            for sub in obj.__all__:
                found[f"{name}.{sub}"] = getattr(obj, sub)
        else:
            found[name] = obj
    return found


def docstring_tests() -> list[doctest.DocTest]:
    finder = doctest.DocTestFinder(recurse=True, exclude_empty=True)
    tests = {}
    for name, obj in public_objects().items():
        if not (inspect.isroutine(obj) or inspect.isclass(obj)):
            continue
        module = inspect.getmodule(obj)
        for test in finder.find(obj, name, module=module, globs=vars(module)):
            if test.examples:
                tests.setdefault(f"{module.__name__}.{test.name}", test)
    return [tests[k] for k in sorted(tests)]


def _has_runnable_example(obj: object) -> bool:
    examples = doctest.DocTestParser().get_examples(inspect.getdoc(obj) or "")
    return any(not e.options.get(doctest.SKIP, False) for e in examples)


DOCTESTS = docstring_tests()


def test_public_names_resolve_and_are_documented():
    for name, obj in public_objects().items():
        if inspect.isroutine(obj) or inspect.isclass(obj):
            assert inspect.getdoc(obj), f"gan_jax.{name} has no docstring"
        if inspect.isfunction(obj):
            hints = inspect.signature(obj).return_annotation
            assert hints is not inspect.Signature.empty, f"gan_jax.{name} has no return type"


def test_public_functions_have_examples():
    lacking = {
        name
        for name, obj in public_objects().items()
        if inspect.isfunction(obj) and not _has_runnable_example(obj)
    }
    assert not lacking - LACKING_EXAMPLES, (
        f"public functions without a runnable `>>>` example: {sorted(lacking - LACKING_EXAMPLES)}"
    )
    assert not LACKING_EXAMPLES - lacking, (
        f"these now have examples; remove them from LACKING_EXAMPLES in {__file__}: "
        f"{sorted(LACKING_EXAMPLES - lacking)}"
    )


def test_doctests_are_collected():
    names = {test.name for test in DOCTESTS}
    for expected in ("default_config", "create_train_states", "train_step", "generate"):
        assert expected in names, f"the docstring example of {expected} was not collected"


@pytest.mark.parametrize("test", DOCTESTS, ids=lambda test: test.name)
def test_docstring_example(test, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    report = []
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    result = runner.run(test, out=report.append, clear_globs=True)
    assert result.failed == 0, "".join(report)


def test_config_reference_is_up_to_date():
    current = (ROOT / "docs" / "config.md").read_text()
    assert current == config_doc.render(), (
        "docs/config.md does not match gan_jax/config.py and configs/: "
        "regenerate it with `python -m gan_jax.config_doc`."
    )


def test_config_reference_documents_every_field():
    documented = [name for group in config_doc.parse_groups() for name, _ in group.fields]
    assert sorted(documented) == sorted(gan_jax.default_config().keys())
    assert all(group.description for group in config_doc.parse_groups())


def test_config_reference_rejects_an_undocumented_field():
    source = (
        "def default_config():\n"
        "    config = ConfigDict()\n"
        "    # Documented.\n"
        "    config.a = 1\n"
        "\n"
        "    config.b = 2\n"
        "    return config\n"
    )
    with pytest.raises(ValueError, match=r"config\.b .* has no comment"):
        config_doc.parse_groups(source)


def test_config_reference_sections_and_shared_comments():
    source = (
        "def default_config():\n"
        "    config = ConfigDict()\n"
        "    # Top.\n"
        "    config.a = 1\n"
        "\n"
        "    # Section.\n"
        "    # Shared by b and c.\n"
        "    config.b = 'x'\n"
        "    config.c = None\n"
        "    return config\n"
    )
    groups = config_doc.parse_groups(source)
    assert [(g.section, g.description, g.fields) for g in groups] == [
        ("General", "Top.", [("a", "1")]),
        ("Section", "Shared by b and c.", [("b", "'x'"), ("c", "None")]),
    ]


def _python_blocks(markdown: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", markdown, flags=re.S | re.M)


def test_readme_shows_the_snippet():
    readme = ROOT / "README.md"
    if not readme.exists():
        pytest.skip("no README.md")
    snippet = SNIPPET.read_text().strip()
    assert any(snippet in block for block in _python_blocks(readme.read_text())), (
        "README.md must show examples/readme_snippet.py verbatim in a ```python block; "
        "copy the file's code into the README (or update the file to match the README)."
    )


def test_readme_snippet_runs(tmp_path, monkeypatch):
    source = SNIPPET.read_text()
    shrunk, count = re.subn(r"for step in range\(\d+\):", "for step in range(2):", source)
    assert count == 1, "the snippet's training loop is expected as `for step in range(N):`"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__main__"}
    exec(compile(shrunk, str(SNIPPET), "exec"), namespace)
    assert int(namespace["g_state"].step) == 2
    assert all(np.isfinite(float(v)) for v in namespace["metrics"].values())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["my_run"]  # nothing else in the cwd
    assert (tmp_path / "my_run" / "samples.png").stat().st_size > 0
    # The directory reads like a trainer workdir (what gan_jax.sample and evaluate load).
    run = gan_jax.load_run(str(tmp_path / "my_run"))
    assert run.step == 2 and run.config.image_size == 16


def test_extending_guide_code_runs(tmp_path, monkeypatch):
    blocks = _python_blocks((ROOT / "docs" / "extending.md").read_text())
    assert len(blocks) >= 2, "docs/extending.md should show a loss and an architecture"
    monkeypatch.chdir(tmp_path)
    registered = dict(gan_jax.LOSSES)
    namespace: dict = {"__name__": "__main__"}
    try:
        for i, block in enumerate(blocks):
            exec(compile(block, f"docs/extending.md block {i + 1}", "exec"), namespace)
    finally:  # The guide registers a loss; leave the registry as other tests expect it.
        gan_jax.LOSSES.clear()
        gan_jax.LOSSES.update(registered)


def test_architecture_doc_names_every_module():
    text = (ROOT / "docs" / "architecture.md").read_text()
    package = ROOT / "gan_jax"
    modules = [p.name for p in package.glob("*.py") if p.name != "__init__.py"]
    modules += [f"{p.name}/" for p in package.iterdir() if (p / "__init__.py").exists()]
    missing = sorted(m for m in modules if m not in text)
    assert not missing, f"docs/architecture.md does not mention {missing}; add them."


def _relative_links(markdown: str) -> list[str]:
    targets = re.findall(r"\]\(([^)\s]+)\)", markdown) + re.findall(r'src="([^"]+)"', markdown)
    return [t.split("#")[0] for t in targets if not re.match(r"[a-z]+:|#", t)]


@pytest.mark.parametrize(
    "page", ["README.md", *sorted(p.relative_to(ROOT).as_posix() for p in ROOT.glob("docs/*.md"))]
)
def test_every_relative_link_and_picture_exists(page):
    path = ROOT / page
    missing = [t for t in _relative_links(path.read_text()) if not (path.parent / t).exists()]
    assert not missing, f"{page} links to files that do not exist: {missing}"
