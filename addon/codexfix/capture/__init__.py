"""Captures: per flow, the SSE bodies byte for byte and a redacted JSON record.

redact.py   what may reach a capture file: every credential removed, odd bytes escaped
record.py   the record, one typed model: built from a flow and its StreamReport,
            written as `<stem>.json`, read back by scripts/summarize.py and replay.py
writer.py   the Capture: the files of one flow, written as it streams, never raising
"""

from .record import FlowFacts, FlowRecord, RecordError, build_record, read_record
from .writer import Capture, capture_stem

__all__ = [
    "Capture",
    "FlowFacts",
    "FlowRecord",
    "RecordError",
    "build_record",
    "capture_stem",
    "read_record",
]
