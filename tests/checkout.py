"""The checkout under test, for the test modules that need its paths while they are
imported (to parametrize over its files). A test takes the `repo` fixture instead."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
