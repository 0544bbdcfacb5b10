"""A bulk job's results.csv, written in input order and resumable: the job's state records how
many rows are complete in how many bytes, so a resumed job cuts off any half-written tail and
appends after its last complete row."""

from __future__ import annotations

import csv

from core.bulk.columns import check_results_header, output_cells
from core.bulk.jobs import JobFolder, JobState
from core.bulk.memory import release_free_memory
from core.bulk.row_window import Row
from core.embeddings.store import EmbeddingWriter, ModelIdentity


class ResultsFile:
    """The open results of one run: rows appended in order, progress saved with them."""

    def __init__(
        self,
        folder: JobFolder,
        state: JobState,
        header: list[str],
        kept: list[str],
        n_sets: int,
        model: ModelIdentity | None = None,
    ) -> None:
        """Open `folder`'s results for `state`: `kept` input columns are copied into each row,
        followed by the outputs of the first label set and of `n_sets` further ones. With
        `model`, each row's image embedding is stored beside them (core/embeddings/)."""
        self.folder, self.state, self.kept, self.n_set_columns = folder, state, kept, n_sets
        self._handle = self._open(header)
        self._writer = csv.writer(self._handle)
        self._embeddings = (
            EmbeddingWriter(folder.path, model, state.rows_done) if model is not None else None
        )

    def __enter__(self) -> ResultsFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.close()
        if self._embeddings is not None:
            self._embeddings.close()

    def _open(self, header: list[str]):  # type: ignore[no-untyped-def]
        path, state = self.folder.results_path, self.state
        if state.rows_done and path.is_file():
            check_results_header(path, header)
        if state.rows_done == 0 or not path.is_file():
            state.rows_done = state.rows_failed = 0
            handle = open(path, "w", encoding="utf-8", newline="")
            csv.writer(handle).writerow(header)
            return handle
        handle = open(path, "r+", encoding="utf-8", newline="")
        handle.truncate(state.results_bytes)
        handle.seek(state.results_bytes)
        return handle

    def write(self, row: Row) -> None:
        """Append one finished row: its kept input cells, then its outputs."""
        task = row.task
        outputs = output_cells(task.outputs, task.error, self.n_set_columns)
        self._writer.writerow([row.values.get(c, "") for c in self.kept] + outputs)
        if self._embeddings is not None:
            self._embeddings.append(task.embedding if task.error is None else None)
        self.state.rows_failed += task.error is not None
        self.state.rows_done += 1

    def save(self) -> None:
        """Flush the rows (and their embeddings first) and record, with the state, how many
        bytes hold them."""
        if self._embeddings is not None:
            self._embeddings.flush()
        self._handle.flush()
        self.state.results_bytes = self._handle.tell()
        self.folder.write_state(self.state)
        release_free_memory()
