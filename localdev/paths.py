"""Where the local-development tooling keeps things: everything generated goes under ``<repo>/.local``."""

from __future__ import annotations

from pathlib import Path

# localdev is used from a checkout (``pip install -e``), so the repository root is this package's parent.
REPO_ROOT = Path(__file__).resolve().parent.parent
LOCAL_DIR = REPO_ROOT / ".local"
LOCAL_MODEL_REPOSITORY = LOCAL_DIR / "model_repository"
LOG_DIR = LOCAL_DIR / "logs"
PRODUCTION_MODELS = REPO_ROOT / "models"
