"""Export the kept QA pairs: a flat parquet table, chat-format JSONL and a Hugging Face `DatasetDict` on disk.

Layout of `outputs/<run>/dataset/` (the contract fine-tuning and evaluation read): `qa.parquet` (every kept
record, all metadata, a `split` column), `train.jsonl` / `test.jsonl` (one object per line: `messages` = user
question then assistant answer, plus the metadata columns), `hf/` (the `DatasetDict.save_to_disk` layout,
splits `train` and `test`, for `datasets.load_from_disk`). The test split is a held-out "GLAN-Test": a seeded,
per-discipline sample. Every file is written in one pass over batches of `chunk_size` rows through pyarrow
writers; per record only a split flag and two hashes stay in memory, so memory stays flat as records grow.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from glan_utils.core.errors import SetupError
from glan_utils.core.parallel import chunks
from glan_utils.core.paths import QA_TABLE
from glan_utils.data.hashing import mix64, string_hashes
from glan_utils.settings import ExportSettings

_TEXT_AND_PLACE = (
    "question",
    "answer",
    "field",
    "subfield",
    "discipline",
    "subject",
    "level",
    "difficulty",
    "question_type",
)
HF_COLUMNS = ("id", "messages", *_TEXT_AND_PLACE, "concepts", "language", "turns")
SPLITS = ("train", "test")
_CHAT_COLUMNS = [name for name in HF_COLUMNS if name not in ("messages", "turns")]
MAX_SHARD_BYTES = 500 * 10**6
"""Arrow shard size of `hf/`, as `datasets`' `save_to_disk` default (500MB)."""
_STR = pa.string()
_MESSAGES = pa.list_(pa.struct([("role", _STR), ("content", _STR)]))
PARQUET_SCHEMA = pa.schema(
    [(name, _STR) for name in ("id", "split", *_TEXT_AND_PLACE)]
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
    + [("followups", _MESSAGES)]  # the chat turns of the follow-up rounds after the answer (none: single-turn)
)


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
    row |= _provenance(record.get("provenance"), "answer") | _provenance(record.get("question_provenance"), "question")
    row["created_at"] = (record.get("provenance") or {}).get("created_at")
    return row


def write_table(rows: Iterable[dict[str, Any]], path: Path, chunk_size: int) -> int:
    """Write flat rows to parquet in batches; returns the row count."""
    total = 0
    with pq.ParquetWriter(path, PARQUET_SCHEMA) as writer:
        for batch in chunks(rows, chunk_size):
            writer.write_table(pa.Table.from_pylist(batch, PARQUET_SCHEMA))
            total += len(batch)
    return total


def read_batches(path: Path, chunk_size: int, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
    """Batches of a parquet file. Without pre-buffering: pyarrow's default keeps every prefetched column chunk
    until the file is closed, so memory would grow with the file (measured: +85 MB per 100k records)."""
    yield from pq.ParquetFile(path, pre_buffer=False).iter_batches(chunk_size, columns=columns)


def split_keys(table_path: Path, chunk_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(id hash, discipline hash) per row of a parquet table, read in batches: 16 bytes a row, no strings."""
    ids, disciplines = [np.empty(0, np.uint64)], [np.empty(0, np.uint64)]
    for batch in read_batches(table_path, chunk_size, ["id", "discipline"]):
        ids.append(string_hashes(batch["id"]))
        disciplines.append(string_hashes(batch["discipline"]))
    return np.concatenate(ids), np.concatenate(disciplines)


def choose_test(id_hashes: np.ndarray, discipline_keys: np.ndarray, settings: ExportSettings) -> np.ndarray:
    """Bool per row: in the held-out test split. Per discipline, the rows with the lowest seeded id hash."""
    rank = mix64(id_hashes ^ np.uint64(settings.seed & (2**64 - 1)))
    _, codes = np.unique(discipline_keys, return_inverse=True)
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


def _chat_lines(rows: pa.RecordBatch) -> Iterator[str]:
    """JSONL lines: `messages` (user question, assistant answer, then any follow-up rounds), the metadata columns
    and `turns` (user turns: 1 for a single-turn pair)."""
    for row in rows.select([*_CHAT_COLUMNS, "followups"]).to_pylist():
        followups = row.pop("followups") or []
        messages = [
            {"role": "user", "content": row["question"]},
            {"role": "assistant", "content": row["answer"]},
            *followups,
        ]
        line = {"id": row.pop("id"), "messages": messages} | row | {"turns": 1 + len(followups) // 2}
        yield json.dumps(line, ensure_ascii=False) + "\n"


def hf_features() -> Any:
    """The `datasets.Features` of the exported splits."""
    from datasets import Features, List, Value

    text = Value("string")
    lists = {"messages": List({"role": text, "content": text}), "concepts": List(text), "turns": Value("int32")}
    return Features({name: lists.get(name, text) for name in HF_COLUMNS})


def chat_messages(question: pa.Array, answer: pa.Array, followups: pa.Array | None = None) -> pa.Array:
    """The `messages` column, built column-wise: [{user: question}, {assistant: answer}, *follow-ups] per row."""
    n = len(question)
    order = np.arange(2 * n).reshape(2, n).T.ravel()  # q0, a0, q1, a1, ...
    content = pa.concat_arrays([question, answer]).take(pa.array(order))
    role = pa.array(np.tile(np.array(["user", "assistant"], object), n), _STR)
    turns = pa.StructArray.from_arrays([role, content], names=["role", "content"])
    messages = pa.ListArray.from_arrays(pa.array(np.arange(0, 2 * n + 1, 2, dtype=np.int32)), turns)
    if followups is None or not followup_counts(followups).any():
        return messages
    rows = [first + (more or []) for first, more in zip(messages.to_pylist(), followups.to_pylist(), strict=True)]
    return pa.array(rows, messages.type)


def followup_counts(followups: pa.Array) -> np.ndarray:
    """Messages each row's follow-up rounds add (0 for a single-turn row)."""
    return pc.list_value_length(followups).fill_null(0).to_numpy(zero_copy_only=False)


class HfSplitWriter:
    """Writes one split of the `DatasetDict.save_to_disk` layout batch by batch, nothing held in memory.

    The layout is what `datasets.load_from_disk` reads: Arrow IPC stream shards
    `data-0000i-of-0000N.arrow` (schema carrying the features), `dataset_info.json` and `state.json`.
    Writing it directly avoids `datasets`' cache copy and the memory-mapped re-read of `save_to_disk`.
    """

    def __init__(self, directory: Path, split: str, max_shard_bytes: int = MAX_SHARD_BYTES) -> None:
        self.directory, self.split, self.max_shard_bytes = directory, split, max_shard_bytes
        self.features = hf_features()
        self.schema = self.features.arrow_schema
        self.shards: list[Path] = []
        self._shard_bytes = 0
        self._digest = hashlib.blake2b(digest_size=8)
        directory.mkdir(parents=True, exist_ok=True)
        self._writer = self._open_shard()

    def _open_shard(self) -> pa.ipc.RecordBatchStreamWriter:
        self.shards.append(self.directory / f"shard-{len(self.shards):05d}.arrow.partial")
        self._shard_bytes = 0
        return pa.ipc.new_stream(str(self.shards[-1]), self.schema)

    def write(self, batch: pa.RecordBatch) -> None:
        """Append kept rows (a batch of the flat table) as HF rows."""
        if not batch.num_rows:
            return
        columns = {name: batch[name] for name in _CHAT_COLUMNS}
        columns["messages"] = chat_messages(batch["question"], batch["answer"], batch["followups"])
        columns["turns"] = pa.array(1 + followup_counts(batch["followups"]) // 2, pa.int32())
        rows = pa.RecordBatch.from_arrays([columns[name] for name in HF_COLUMNS], names=list(HF_COLUMNS))
        rows = rows.cast(self.schema)
        if self._shard_bytes and self._shard_bytes + rows.nbytes > self.max_shard_bytes:
            self._writer.close()
            self._writer = self._open_shard()
        self._writer.write_batch(rows)
        self._shard_bytes += rows.nbytes
        self._digest.update(string_hashes(batch["id"]).tobytes())

    def close(self) -> None:
        """Name the shards `data-i-of-N.arrow` and write the metadata files `load_from_disk` reads."""
        from datasets import DatasetInfo

        self._writer.close()
        names = [f"data-{i:05d}-of-{len(self.shards):05d}.arrow" for i in range(len(self.shards))]
        for shard, name in zip(self.shards, names, strict=True):
            shard.replace(self.directory / name)
        DatasetInfo(features=self.features).write_to_directory(str(self.directory), pretty_print=True)
        state = {
            "_data_files": [{"filename": name} for name in names],
            "_fingerprint": self._digest.hexdigest(),
            "_format_columns": None,
            "_format_kwargs": {},
            "_format_type": None,
            "_output_all_columns": False,
            "_split": self.split,
        }
        (self.directory / "state.json").write_text(json.dumps(state, indent=2, sort_keys=True), "utf-8")


def write_splits(table_path: Path, out_dir: Path, settings: ExportSettings) -> dict[str, int]:
    """From the kept rows, in one streaming pass: `qa.parquet` with the split, chat JSONL and `hf/`.

    Only the split assignment (one bool per row) and the hashes it is computed from stay in memory.
    """
    is_test = choose_test(*split_keys(table_path, settings.chunk_size), settings)
    hf_dir = out_dir / "hf"
    if hf_dir.exists():
        shutil.rmtree(hf_dir)
    hf_dir.mkdir(parents=True)
    (hf_dir / "dataset_dict.json").write_text(json.dumps({"splits": list(SPLITS)}), "utf-8")
    hf = {name: HfSplitWriter(hf_dir / name, name) for name in SPLITS}
    offset = 0
    with ExitStack() as stack:
        jsonl = {name: stack.enter_context((out_dir / f"{name}.jsonl").open("w", encoding="utf-8")) for name in SPLITS}
        table = stack.enter_context(pq.ParquetWriter(out_dir / QA_TABLE, PARQUET_SCHEMA))
        for batch in read_batches(table_path, settings.chunk_size):
            test = is_test[offset : offset + batch.num_rows]
            offset += batch.num_rows
            split = pa.array(np.where(test, "test", "train"), _STR)
            batch = batch.set_column(batch.schema.get_field_index("split"), "split", split)
            table.write_batch(batch)
            for name, mask in (("train", ~test), ("test", test)):
                rows = batch.filter(pa.array(mask))
                hf[name].write(rows)
                jsonl[name].writelines(_chat_lines(rows))
    for writer in hf.values():
        writer.close()
    return {"train": int((~is_test).sum()), "test": int(is_test.sum())}


def push_to_hub(dataset_dir: str | Path, repo_id: str, token_env: str = "HF_TOKEN", private: bool = True) -> None:
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
