"""What the predict endpoints take and give, as pydantic models (the OpenAPI description is
made from them); how /v1/predict reads its body (JSON, or a form with the uploaded image); and
the answer's shape: the same document as `python -m core predict --json` gives, less the image
it names (prediction_views, meant for both).

    request:  {image_url, labels | label_set, templates?, text?, text_weight?, top_k?}
    answer:   {model, device, seconds, top: [{label, score}],
               with text: image_top, text_top, decided_by;
               a model of several attributes: attributes: {name: {top, ...}}}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.engine.fusion import DEFAULT_TEXT_WEIGHT
from core.engine.images import MAX_IMAGE_BYTES
from core.errors import UserError

if TYPE_CHECKING:
    pass

MAX_BATCH_ITEMS = 64
MAX_TOP_K = 1000
MAX_LABELS = 1000  # pasted labels; a saved set may hold more
MAX_TEMPLATES = 16
MAX_TEXT_CHARS = 10_000
MAX_URL_CHARS = 4096
MAX_FORM_FIELDS = MAX_LABELS + MAX_TEMPLATES + 16
UPLOAD_FIELD = "image"
LINE_FIELDS = ("labels", "templates")  # form fields that may hold one item per line
MB = 1024 * 1024

Label = Annotated[str, Field(max_length=500)]
Template = Annotated[str, Field(max_length=500)]


class PredictFields(BaseModel):
    """Everything of a predict request but the image: the categories (`labels` or
    `label_set`), how to prompt them, the product text, and how many labels to return."""

    model_config = ConfigDict(extra="forbid")

    labels: list[Label] | None = Field(
        None,
        max_length=MAX_LABELS,
        description="The candidate labels (at least two; duplicates collapse). Give these or "
        "label_set; a trained model with its own classes needs neither.",
        examples=[["sneakers", "handbag", "wristwatch"]],
    )
    label_set: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        description="A saved label set's name (GET /v1/label-sets lists them), instead of labels.",
    )
    templates: list[Template] | None = Field(
        None,
        max_length=MAX_TEMPLATES,
        description='Prompt templates, each with "{}" where the label goes, ensembled '
        '(default "a photo of a {}."; a saved set\'s own templates unless given).',
    )
    text: str = Field(
        "",
        max_length=MAX_TEXT_CHARS,
        description="The product's title or description: with it, the label is decided from "
        "the image and the text together, and each side's own ranking is returned too.",
    )
    text_weight: float = Field(
        DEFAULT_TEXT_WEIGHT,
        ge=0.0,
        le=1.0,
        description="How much the text counts against the image (0: image only, 1: text only).",
    )
    top_k: int = Field(5, ge=1, le=MAX_TOP_K, description="How many labels to return, best first.")

    @model_validator(mode="after")
    def _one_label_source(self) -> PredictFields:
        if self.labels is not None and self.label_set is not None:
            raise PydanticCustomError(
                "labels_twice", "Give labels or label_set, not both"
            )
        return self


class PredictItem(PredictFields):
    """One image by URL (a JSON request, or an item of a batch)."""

    image_url: str = Field(
        min_length=1,
        max_length=MAX_URL_CHARS,
        description="An http(s) address of the image (private addresses are refused unless the "
        "server allows them), or one of the app's example images as example:NAME.png.",
        examples=["https://example.com/product.jpg"],
    )


class PredictForm(PredictFields):
    """A multipart form: the image as the file field `image`, or `image_url`; the other fields
    as in JSON, where `labels` and `templates` may be repeated fields, or one field with one
    label (template) per line."""

    image_url: str | None = Field(None, min_length=1, max_length=MAX_URL_CHARS)


def _at_most_batch(items: list) -> list:
    if len(items) > MAX_BATCH_ITEMS:
        raise PydanticCustomError(
            "batch_too_large",
            "A batch holds at most {limit} items, not {count}; send the rest in another batch",
            {"limit": MAX_BATCH_ITEMS, "count": len(items)},
        )
    return items


class PredictBatch(BaseModel):
    """Up to 64 images by URL, each with its own labels and options."""

    model_config = ConfigDict(extra="forbid")

    items: Annotated[list[PredictItem], AfterValidator(_at_most_batch)] = Field(
        min_length=1, json_schema_extra={"maxItems": MAX_BATCH_ITEMS}
    )


class LabelScoreBody(BaseModel):
    """A label and its probability (0..1)."""

    label: str
    score: float


class SetAnswer(BaseModel):
    """One label set's (or trained attribute's) answer: its top labels as decided; with
    product text also as the image alone and the text alone rank them (text_top null: the
    model cannot read text), and which side decided."""

    top: list[LabelScoreBody]
    image_top: list[LabelScoreBody] | None = None
    text_top: list[LabelScoreBody] | None = None
    decided_by: str | None = None


class PredictAnswer(SetAnswer):
    """The labels of one image: the first set's (attribute's) answer at the top level, as
    `python -m core predict --json` gives it, and every attribute's for a model of several."""

    model: str
    device: str
    seconds: float
    attributes: dict[str, SetAnswer] | None = None


class ItemError(BaseModel):
    """Why one item of a batch has no labels (the other items are not affected)."""

    error: str


class BatchAnswer(BaseModel):
    """One result per item, in the items' order."""

    results: list[PredictAnswer | ItemError]


# ---------------------------------------------------------------- reading a predict request


@dataclass(frozen=True)
class Upload:
    """An image file sent in a form."""

    name: str
    data: bytes


def _invalid(error: ValidationError | str) -> RequestValidationError:
    """A 422 with one sentence: a model's validation errors, or a sentence of our own."""
    if isinstance(error, str):
        return RequestValidationError([{"type": "value_error", "loc": ("body",), "msg": error}])
    found = error.errors(include_url=False, include_context=False, include_input=False)
    return RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in found])


def _validated(model: type[BaseModel], data: Any) -> Any:
    try:
        if isinstance(data, bytes):
            return model.model_validate_json(data)
        return model.model_validate(data)
    except ValidationError as exc:
        raise _invalid(exc) from None


async def read_predict_request(request: Request) -> tuple[PredictFields, Upload | None]:
    """The request's item, from a JSON body or a multipart form (with the uploaded image)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind in ("multipart/form-data", "application/x-www-form-urlencoded"):
        return await _form_item(request)
    if kind in ("", "application/json") or kind.endswith("+json"):
        return _validated(PredictItem, await request.body()), None
    raise HTTPException(
        415,
        "Send application/json, or multipart/form-data with the image as the file 'image'.",
    )


async def _form_item(request: Request) -> tuple[PredictFields, Upload | None]:
    try:
        form = await request.form(max_files=1, max_fields=MAX_FORM_FIELDS)
    except StarletteHTTPException as exc:  # Starlette's words for a malformed form
        words = str(exc.detail).rstrip(".").replace(". ", "; ")
        raise UserError(f"The form cannot be read ({words[:1].lower()}{words[1:]}).") from None
    try:
        item = _validated(PredictForm, _form_fields(form))
        upload = form.get(UPLOAD_FIELD)
        if upload is not None and not isinstance(upload, UploadFile):
            raise _invalid(f"{UPLOAD_FIELD}: Send the image as a file, not as text")
        if (upload is None) == (item.image_url is None):
            raise _invalid(
                f"Give the image once: the file '{UPLOAD_FIELD}' or image_url"
                + (", not both" if upload is not None else "")
            )
        if upload is None:
            return item, None
        data = await upload.read(MAX_IMAGE_BYTES + 1)
        if len(data) > MAX_IMAGE_BYTES:
            raise HTTPException(
                413,
                f"The uploaded image is larger than {MAX_IMAGE_BYTES // MB} MB, the most an "
                "image may be.",
            )
        return item, Upload(upload.filename or UPLOAD_FIELD, data)
    finally:
        await form.close()


def _form_fields(form: FormData) -> dict[str, Any]:
    """The form's fields as the JSON request's: labels and templates from repeated fields or
    one per line; other fields as given (repeated: a list, which validation refuses)."""
    fields: dict[str, Any] = {}
    for name in dict.fromkeys(form.keys()):
        if name == UPLOAD_FIELD:
            continue
        values = form.getlist(name)
        if name in LINE_FIELDS:
            fields[name] = [
                line for v in values for line in (v.splitlines() if isinstance(v, str) else [v])
            ]
        else:
            fields[name] = values[0] if len(values) == 1 else values
    return fields


def predict_request_body() -> dict:
    """The OpenAPI description of /v1/predict's two kinds of body (the endpoint reads the body
    itself, to take either)."""
    form = PredictForm.model_json_schema()
    form["properties"] = {
        UPLOAD_FIELD: {"type": "string", "format": "binary", "description": "The image file."},
        **form["properties"],
    }
    form["description"] = (form.get("description") or "") + " Give the file or image_url."
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": PredictItem.model_json_schema()},
                "multipart/form-data": {"schema": form},
            },
        }
    }

