"""The old home of the style machinery, kept so that code importing it keeps working: each name now
lives in the module that does its one job (see ``reference.impl.adapters`` for the map).

| names | now in |
|---|---|
| ``CHANGE_RATE``, ``RecordingOptimizer``, ``LearningRate``, ``captured_backward`` | ``capture``: how gradients are captured |
| ``outside``, ``outside_input``, ``INPUT_KEYS``, ``declared_unsupported``, ``KINKS``, ``kink_conventions`` | ``limits``: declared limits and conventions |
| ``get_path``, ``set_path``, ``call`` | ``calls``: how their code is called and where its arrays are |
"""

from reference.impl.calls import call, get_path, set_path
from reference.impl.capture import CHANGE_RATE, LearningRate, RecordingOptimizer, captured_backward
from reference.impl.limits import INPUT_KEYS, KINKS, declared_unsupported, kink_conventions, outside, outside_input

__all__ = [
    "CHANGE_RATE", "INPUT_KEYS", "KINKS", "LearningRate", "RecordingOptimizer", "call", "captured_backward",
    "declared_unsupported", "get_path", "kink_conventions", "outside", "outside_input", "set_path",
]  # fmt: skip
