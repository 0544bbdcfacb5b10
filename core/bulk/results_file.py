"""A bulk job's results.csv, written in input order and resumable: the job's state records how
many rows are complete in how many bytes, so a resumed job cuts off any half-written tail and
appends after its last complete row."""

from __future__ import annotations

import csv

from core.bulk.columns import OutputLayout, check_results_header
from core.bulk.jobs import JobFolder, JobState
from core.bulk.memory import release_free_memory
from core.bulk.row_labels import RowOutput
from core.embeddings.store import EmbeddingWriter, ModelIdentity


class ResultsFile:
    """The open results of one run: rows appended in order, progress saved with them."""

    def __init__(
        self,
        folder: JobFolder,
        state: JobState,
        header: list[str],
        kept: list[str],
        layout: OutputLayout,
        model: ModelIdentity | None = None,
    ) -> None:
        """Open `folder`'s results for `state`: `kept` input columns are copied into each row,
        followed by its outputs as `layout` places them. With `model`, each row's image
        embedding is stored beside them (core/embeddings/)."""
        self.folder, self.state, self.kept, self.layout = folder, state, kept, layout
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

    def write(self, values: dict[str, str], result: RowOutput) -> None:
        """Append one finished row: its kept input cells, then its outputs. A row counts as
        failed when it has no category (a row labelled from its text keeps its image's error
        but is not failed)."""
        outputs = self.layout.cells(result.outputs, result.error, result.sides)
        self._writer.writerow([values.get(c, "") for c in self.kept] + outputs)
        if self._embeddings is not None:
            self._embeddings.append(result.embedding)
        self.state.rows_failed += not result.labelled
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
