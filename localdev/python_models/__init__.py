"""Python-backend ``model.py`` files that the local model repository copies into each model version.

They run inside Triton's python backend stub (which provides ``triton_python_backend_utils``), never in
this process; they live here as real modules so ruff and mypy check them.
"""
