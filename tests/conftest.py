import os
from pathlib import Path

import numpy as np
import pytest

CORPUS = Path(os.environ.get("FASTIFKL_CORPUS",
                            Path(__file__).resolve().parents[1] / ".." / "shared" / "corpus")).resolve()


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    """Path of ../shared/corpus; skips the test with a clear message when it is absent."""
    if not (CORPUS / "MANIFEST.tsv").is_file():
        pytest.skip(f"shared corpus not found at {CORPUS} (set FASTIFKL_CORPUS); integration test skipped")
    return CORPUS


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
