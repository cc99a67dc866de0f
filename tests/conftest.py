"""Makes tests/train_reference.py importable from both test folders."""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
