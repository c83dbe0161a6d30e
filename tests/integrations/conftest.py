"""The integrations tests import their shared tiny models and data from ``hf_support``."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
