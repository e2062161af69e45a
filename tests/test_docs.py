"""The documentation: the README links every topic page under docs/ and each links back,
relative links resolve, and the README's test commands are CI's."""

import re
from pathlib import Path

import pytest
from checkout import REPO

README = REPO / "README.md"
PAGES = sorted((REPO / "docs").glob("*.md"))
TOPIC_PAGES = [
    "dataset.md",
    "training.md",
    "evaluation.md",
    "faces-and-video.md",
    "deployment.md",
    "performance.md",
    "troubleshooting.md",
]
# A markdown link or image, [text](target) / ![alt](target); the target ends at a space or ')'.
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)[^)]*\)")
FENCE = re.compile(r"^```.*?^```", re.DOTALL | re.MULTILINE)


def relative_links(page):
    """Targets of the relative links and images of `page`, outside code blocks, without anchors."""
    text = FENCE.sub("", page.read_text())
    targets = [target.split("#")[0] for target in LINK.findall(text)]
    return [t for t in targets if t and not re.match(r"[a-z][a-z0-9+.-]*:", t)]


def fenced_block(text, heading):
    """The lines of the first fenced block after `heading`."""
    section = text[text.index(heading) :]
    return re.search(r"```\w*\n(.*?)```", section, re.DOTALL).group(1).splitlines()


@pytest.mark.parametrize("page", [README, *PAGES], ids=lambda page: page.name)
def test_every_relative_link_resolves(page):
    missing = [t for t in relative_links(page) if not (page.parent / t).exists()]
    assert not missing, f"{page.name} links to missing files: {missing}"


def test_the_readme_links_every_topic_page_and_each_links_back():
    readme_links = {Path(t).name for t in relative_links(README) if t.startswith("docs/")}
    for name in TOPIC_PAGES:
        assert name in readme_links, f"README.md does not link docs/{name}"
        assert "../README.md" in relative_links(REPO / "docs" / name), f"{name}: no link back"


def test_the_readme_test_block_sets_up_and_runs_the_tests_as_ci_does():
    # A clean install (README's "Install") has no pytest: the block must install the dev
    # requirements before running pytest, and CI must run the same commands: the default
    # run and the slow tests.
    block = fenced_block(README.read_text(), "## Run the tests")
    assert block == [
        "python -m pip install -r requirements-dev.txt",
        "python -m pytest",
        "python -m pytest -m slow",
    ]
    ci = (REPO / ".ci" / "run").read_text()
    assert re.search(r"^python3? -m pip install .*-r requirements-dev\.txt$", ci, re.MULTILINE)
    assert re.search(r"^python3? -m pytest$", ci, re.MULTILINE)
    assert re.search(r"^python3? -m pytest -m slow$", ci, re.MULTILINE)
    assert "-e .[dev]" in (REPO / "requirements-dev.txt").read_text()
