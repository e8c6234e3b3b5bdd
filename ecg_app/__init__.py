"""ecg-app: classify pictures of 12-lead ECG printouts and explain the result.

For educational and research use; not a substitute for professional diagnosis.
"""

__version__ = "0.1.0"
