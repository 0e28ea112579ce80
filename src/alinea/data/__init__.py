"""The data layer: feedback records, their JSONL files, importers and exporters, and statistics.

- `records`: the six record types (prompt, demonstration, comparison, ranking, rating, thumb), `parse_record`.
- `jsonl`: `read_records` / `validate_file` (errors as FILE:LINE: FIELD: EXPECTED) and atomic `write_records`.
- `importers`: HH-RLHF, Alpaca and TRL files to records; `detect_format`.
- `exporters`: records to TRL's dataset formats.
- `stats`: `dataset_stats`, counts and lengths.
- `split`: `split_records`, seeded train / held-out splits that keep related records on one side.
- `corpus`, `treebank`: raw-text pretraining corpora (from text, record files and SST sentiment trees).

docs/data.md is the reference for every field and format.
"""

from alinea.data.exporters import EXPORT_KINDS, TrlExport, export_trl
from alinea.data.importers import (
    FORMATS,
    ImportResult,
    SkippedRow,
    detect_format,
    import_alpaca,
    import_file,
    import_hh_rlhf,
    import_trl,
)
from alinea.data.jsonl import ValidationReport, read_records, validate_file, write_jsonl, write_records
from alinea.data.records import (
    RECORD_TYPES,
    Comparison,
    Demonstration,
    Message,
    Prompt,
    Ranking,
    Rating,
    Record,
    RecordError,
    Thumb,
    parse_record,
)
from alinea.data.split import Split, split_records
from alinea.data.stats import dataset_stats

__all__ = [
    "EXPORT_KINDS",
    "FORMATS",
    "RECORD_TYPES",
    "Comparison",
    "Demonstration",
    "ImportResult",
    "Message",
    "Prompt",
    "Ranking",
    "Rating",
    "Record",
    "RecordError",
    "SkippedRow",
    "Split",
    "Thumb",
    "TrlExport",
    "ValidationReport",
    "dataset_stats",
    "detect_format",
    "export_trl",
    "import_alpaca",
    "import_file",
    "import_hh_rlhf",
    "import_trl",
    "parse_record",
    "read_records",
    "split_records",
    "validate_file",
    "write_jsonl",
    "write_records",
]
