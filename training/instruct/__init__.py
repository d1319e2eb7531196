"""ECGInstruct-format instruction data: the format and its one reader, generators, the report
template; the released set (released), teacher synthesis (synth), the quality report (quality).
``python -m training.instruct --records N --out DIR`` builds a synthetic training set.

>>> from training.instruct import read_samples, generate_samples      # doctest: +SKIP
"""

from training.instruct.format import (QTYPES, TASKS, InstructFormatError, Sample, iter_samples,
                                      read_samples, validate_sample, write_samples)
from training.instruct.generate import generate_samples
from training.instruct.report import build_report

__all__ = ["QTYPES", "TASKS", "InstructFormatError", "Sample", "iter_samples", "read_samples",
           "validate_sample", "write_samples", "generate_samples", "build_report"]
