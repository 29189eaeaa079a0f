"""Export the kept QA pairs: a flat parquet table, chat-format JSONL and a Hugging Face `DatasetDict` on disk.

Layout of `outputs/<run>/dataset/` (the contract fine-tuning and evaluation read): `qa.parquet` (every kept
record, all metadata, a `split` column), `train.jsonl` / `test.jsonl` (one object per line: `messages` = user
question then assistant answer, plus the metadata columns), `hf/` (`DatasetDict.save_to_disk`, splits `train`
and `test`). The test split is a held-out "GLAN-Test": a seeded, per-discipline sample. Every step streams in
batches of `chunk_size` rows through pyarrow writers, so memory stays flat however many records there are.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import Field

from glan_utils.config import Section
from glan_utils.dedup import mix64, string_hashes
from glan_utils.errors import SetupError

HF_COLUMNS = (
    "id",
    "messages",
    "question",
    "answer",
    "field",
    "subfield",
    "discipline",
    "subject",
    "level",
    "difficulty",
    "concepts",
    "language",
)
_STR = pa.string()
PARQUET_SCHEMA = pa.schema(
    [
        (name, _STR)
        for name in (
            "id",
            "split",
            "question",
            "answer",
            "field",
            "subfield",
            "discipline",
            "subject",
            "level",
            "difficulty",
        )
    ]
    + [("concepts", pa.list_(_STR)), ("language", _STR), ("session_indices", pa.list_(pa.int32()))]
    + [
        (name, _STR)
        for name in (
            "question_id",
            "syllabus_id",
            "subject_id",
            "discipline_id",
            "task_id",
            "answer_prompt",
            "answer_prompt_hash",
            "answer_model",
            "answer_params",
            "question_prompt",
            "question_prompt_hash",
            "question_model",
            "question_params",
            "created_at",
        )
    ]
)


class ExportSettings(Section):
    """Train / held-out test split (GLAN-Test: 50 questions per discipline) and the export batch size."""

    test_per_discipline: int = Field(50, ge=0, description="Test questions per discipline (paper: 50).")
    test_fraction: float | None = Field(
        None, gt=0, lt=1, description="If set: this share of each discipline instead."
    )
    test_max_share: float = Field(0.5, gt=0, le=1, description="Never more than this share of a discipline.")
    seed: int = Field(0, description="Seeds which records go to test.")
    chunk_size: int = Field(10_000, ge=1, description="Rows per write batch.")


def _provenance(prov: dict[str, Any] | None, prefix: str) -> dict[str, str | None]:
    prov = prov or {}
    params = prov.get("params")
    return {
        f"{prefix}_prompt": prov.get("prompt"),
        f"{prefix}_prompt_hash": prov.get("prompt_hash"),
        f"{prefix}_model": prov.get("model"),
        f"{prefix}_params": json.dumps(params, sort_keys=True) if params is not None else None,
    }


def flat_row(record: dict[str, Any]) -> dict[str, Any]:
    """One QAPair (as stored JSON) as a flat metadata row; `split` is filled in later."""
    row = {name: record.get(name) for name in PARQUET_SCHEMA.names if name in record}
    row |= _provenance(record.get("provenance"), "answer") | _provenance(
        record.get("question_provenance"), "question"
    )
    row["created_at"] = (record.get("provenance") or {}).get("created_at")
    return row


def write_table(rows: Iterable[dict[str, Any]], path: Path, chunk_size: int) -> int:
    """Write flat rows to parquet in batches; returns the row count."""
    total = 0
    it = iter(rows)
    with pq.ParquetWriter(path, PARQUET_SCHEMA) as writer:
        while batch := list(islice(it, chunk_size)):
            writer.write_table(pa.Table.from_pylist(batch, PARQUET_SCHEMA))
            total += len(batch)
    return total


def choose_test(ids: pa.ChunkedArray, disciplines: pa.ChunkedArray, settings: ExportSettings) -> np.ndarray:
    """Bool per row: in the held-out test split. Per discipline, the rows with the lowest seeded id hash."""
    id_hashes = np.concatenate([string_hashes(chunk) for chunk in ids.chunks] or [np.empty(0, np.uint64)])
    rank = mix64(id_hashes ^ np.uint64(settings.seed & (2**64 - 1)))
    codes = pc.dictionary_encode(disciplines.combine_chunks()).indices.to_numpy(zero_copy_only=False)
    counts = np.bincount(codes)
    wanted = (
        np.round(counts * settings.test_fraction)
        if settings.test_fraction is not None
        else np.full(len(counts), settings.test_per_discipline)
    )
    quota = np.minimum(wanted, np.floor(counts * settings.test_max_share)).astype(np.int64)
    order = np.lexsort((rank, codes))
    first = np.searchsorted(codes[order], codes[order])
    is_test = np.zeros(len(codes), bool)
    is_test[order] = (np.arange(len(order)) - first) < quota[codes[order]]
    return is_test


def _chat_line(row: dict[str, Any]) -> str:
    messages = [{"role": "user", "content": row["question"]}, {"role": "assistant", "content": row["answer"]}]
    return json.dumps(
        {"id": row["id"], "messages": messages}
        | {k: row[k] for k in HF_COLUMNS if k not in ("id", "messages")},
        ensure_ascii=False,
    )


def write_splits(table_path: Path, out_dir: Path, settings: ExportSettings) -> dict[str, int]:
    """From the kept rows: add the split, write `qa.parquet` and the chat JSONL files; returns split sizes."""
    source = pq.ParquetFile(table_path)
    columns = source.read(columns=["id", "discipline"])
    is_test = choose_test(columns["id"], columns["discipline"], settings)
    del columns
    offset = 0
    handles = {name: (out_dir / f"{name}.jsonl").open("w", encoding="utf-8") for name in ("train", "test")}
    try:
        with pq.ParquetWriter(out_dir / "qa.parquet", PARQUET_SCHEMA) as writer:
            for batch in source.iter_batches(batch_size=settings.chunk_size):
                split = np.where(is_test[offset : offset + batch.num_rows], "test", "train")
                offset += batch.num_rows
                batch = batch.set_column(
                    batch.schema.get_field_index("split"), "split", pa.array(split, _STR)
                )
                writer.write_batch(batch)
                for row, name in zip(
                    batch.select(HF_COLUMNS[:1] + HF_COLUMNS[2:]).to_pylist(), split, strict=True
                ):
                    handles[name].write(_chat_line(row) + "\n")
    finally:
        for handle in handles.values():
            handle.close()
    return {"train": int((~is_test).sum()), "test": int(is_test.sum())}


def hf_features() -> Any:
    """The `datasets.Features` of the exported splits."""
    from datasets import Features, List, Value

    text = Value("string")
    return Features(
        {"id": text, "messages": List({"role": text, "content": text})}
        | {k: text for k in HF_COLUMNS[2:] if k != "concepts"}
        | {"concepts": List(text)}
    )


def write_hf(out_dir: Path, work_dir: Path) -> Path:
    """Build the `DatasetDict` from the JSONL files (pyarrow's chunked reader) and save it to `out_dir/hf`."""
    from datasets import Dataset, DatasetDict

    features = hf_features()
    cache = work_dir / "hf_cache"
    splits = {}
    for name in ("train", "test"):
        path = out_dir / f"{name}.jsonl"
        splits[name] = (
            Dataset.from_json(str(path), features=features, cache_dir=str(cache))
            if path.stat().st_size
            else Dataset.from_dict({k: [] for k in features}, features=features)
        )
        splits[name] = splits[name].select_columns(list(HF_COLUMNS))
    target = out_dir / "hf"
    if target.exists():
        shutil.rmtree(target)
    DatasetDict(splits).save_to_disk(str(target))
    shutil.rmtree(cache, ignore_errors=True)
    return target


def iter_chat(path: Path) -> Iterator[dict[str, Any]]:
    """Read an exported JSONL split back (for checks and fine-tuning)."""
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            yield json.loads(line)


def push_to_hub(
    dataset_dir: str | Path, repo_id: str, token_env: str = "HF_TOKEN", private: bool = True
) -> None:
    """Upload `hf/` and the dataset card to the Hub. The token is read from `token_env`, never stored."""
    from datasets import load_from_disk

    token = os.environ.get(token_env)
    if not token:
        raise SetupError(f"push_to_hub needs a Hugging Face token in the environment variable {token_env}")
    dataset_dir = Path(dataset_dir)
    load_from_disk(str(dataset_dir / "hf")).push_to_hub(repo_id, token=token, private=private)
    from huggingface_hub import HfApi

    HfApi(token=token).upload_file(
        path_or_fileobj=str(dataset_dir / "README.md"),
        path_in_repo="README.md",
        repo_id=repo_id,
        repo_type="dataset",
    )
