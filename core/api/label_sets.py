"""Saved label sets over HTTP: the same store (CLIPLAB_DATA_DIR/label_sets/), the same JSON
document as the Label sets page exports and imports, and the same checks before saving, each
refusal one sentence.

    GET    /v1/label-sets          the saved sets' names, with their label counts
    GET    /v1/label-sets/{name}   one set as a document (labels with prompts and enabled flags,
                                   templates, description)
    PUT    /v1/label-sets/{name}   create (201) or replace (200) it from such a document
    DELETE /v1/label-sets/{name}   remove it (204)

A name may hold any characters, slashes included: the store reduces it to a safe file name
("../Shoes" is kept as shoes.json), so no name reaches outside the folder; two names that
reduce alike ("Shoe types", "shoe-types") are the same set.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from core.api.deps import service_of, settings_of
from core.api.errors import NotFound
from core.engine.classifier import truncation_problem
from core.errors import UserError, clip_text
from core.labels.document import DOCUMENT_FORMAT, LabelSetDocument
from core.labels.label_set import DEFAULT_TEMPLATES, LabelsError
from core.labels.store import LabelStore, LabelStoreError

router = APIRouter(tags=["label sets"])
NAME_PATH = "/label-sets/{name:path}"


class LabelEntryBody(BaseModel):
    """One row of a label set: the label, the fuller text used in the templates instead of it
    (optional), and whether it is used when classifying."""

    label: str = ""
    prompt: str = ""
    enabled: bool = True


class LabelSetBody(BaseModel):
    """A label set as the Label sets page exports it (JSON). Labels may also be plain texts.
    On PUT the address names the set: a `name` here is ignored."""

    format: str = DOCUMENT_FORMAT
    version: int = 1
    name: str = ""
    description: str = ""
    templates: list[str] = Field(default_factory=lambda: list(DEFAULT_TEMPLATES))
    labels: list[LabelEntryBody | str]


class LabelSetSummary(BaseModel):
    """A saved set in the list: its name, how many labels it holds and how many are enabled."""

    name: str
    labels: int
    enabled: int
    description: str


class LabelSetList(BaseModel):
    """Every saved set, sorted by name ignoring case."""

    label_sets: list[LabelSetSummary]


def store_of(request: Request) -> LabelStore:
    """The app's label-set store (starter sets copied in on first use)."""
    try:
        return LabelStore.from_settings(settings_of(request))
    except OSError as exc:
        raise UserError(
            f"The label-set folder cannot be used ({exc.strerror or exc}); check CLIPLAB_DATA_DIR."
        ) from exc


def no_such_set(name: str) -> NotFound:
    """The answer to a request naming a saved set that does not exist (404)."""
    return NotFound(
        f"There is no saved label set '{clip_text(name, 100)}'; GET /v1/label-sets lists them."
    )


def saved(store: LabelStore, name: str) -> LabelSetDocument:
    """The saved set `name`; NotFound when there is none."""
    if not store.exists(name):
        raise no_such_set(name)
    return store.load(name)


@router.get("/label-sets", response_model=LabelSetList)
def list_label_sets(store: LabelStore = Depends(store_of)) -> LabelSetList:  # noqa: B008
    """The saved label sets, with their label counts."""
    found = []
    for name in store.names():
        try:
            doc = store.load(name)
        except LabelStoreError:  # deleted or damaged since it was listed
            continue
        enabled = sum(entry.enabled for entry in doc.entries)
        found.append(
            LabelSetSummary(
                name=doc.name, labels=len(doc.entries), enabled=enabled, description=doc.description
            )
        )
    return LabelSetList(label_sets=found)


@router.get(NAME_PATH, response_model=LabelSetBody)
def read_label_set(name: str, store: LabelStore = Depends(store_of)) -> dict:  # noqa: B008
    """One saved set as a document: every label (enabled or not) with its prompt, the templates
    and the description (the Label sets page's JSON export)."""
    return saved(store, name).to_dict()


@router.put(
    NAME_PATH,
    response_model=LabelSetBody,
    status_code=200,
    responses={201: {"model": LabelSetBody, "description": "The set was created."}},
)
def put_label_set(
    name: str,
    body: LabelSetBody,
    request: Request,
    response: Response,
    store: LabelStore = Depends(store_of),  # noqa: B008
) -> dict:
    """Create the set `name` (201) or replace it (200) with the document, after the checks the
    Label sets page makes before saving; the saved set comes back as stored (trimmed)."""
    given = LabelSetDocument.from_dict(body.model_dump())
    doc = LabelSetDocument(name, given.entries, given.templates, given.description)
    refuse_truncation_twins(request, doc)
    existed = store.exists(name)
    written = store.save(doc, replace=name if existed else None)
    response.status_code = 200 if existed else 201
    return written.to_dict()


def refuse_truncation_twins(request: Request, doc: LabelSetDocument) -> None:
    """As the page does with its loaded model: labels the server's zero-shot model cannot tell
    apart once their prompts are cut to its text positions are refused (checked once the
    model is loaded and the set is otherwise valid; the store's checks come after)."""
    classifier = service_of(request).classifier
    if classifier is None or classifier.probe is not None:
        return
    try:
        label_set = doc.to_label_set()
    except LabelsError:  # the store's checks say why, as the page's do
        return
    problem = truncation_problem(classifier, label_set)
    if problem:
        raise UserError(problem)


@router.delete(NAME_PATH, status_code=204)
def delete_label_set(name: str, store: LabelStore = Depends(store_of)) -> Response:  # noqa: B008
    """Remove the saved set `name`."""
    saved(store, name)
    store.delete(name)
    return Response(status_code=204)
