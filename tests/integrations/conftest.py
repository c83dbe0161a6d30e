"""The integrations tests import their shared tiny models and data from ``hf_support``."""

import importlib.util
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
# The Hugging Face tests need the `hf` extra (part of `dev`, so CI has it).
if importlib.util.find_spec("transformers") is None:
    collect_ignore_glob = ["test_hf_*.py"]
