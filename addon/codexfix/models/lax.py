"""Lax twins of the event models: the same fields, each one None when its value does not
fit, so that an event that fails its model still reaches the handlers that read it.

A twin is validated from the event as Python's `json` (or `reading.read_event`) loaded
it, so it takes what pydantic's JSON parser refuses (lone surrogates, invalid UTF-8
replaced). Only an event's `type`, the union's discriminator, must be a known one.

A list keeps the elements that fit (a `choices` list with one broken choice still holds
the others); a nested discriminated union stays one (an unknown member type: None); a
field marked `LaxAs(annotation)` takes that (wider) type in the twin: the strict model
names the values clients expect, the handlers read any value of the wider type.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    TypeAdapter,
    ValidationError,
    WrapValidator,
    create_model,
)
from pydantic_core.core_schema import ValidatorFunctionWrapHandler

from .base import Model, union_members

_twins: dict[tuple[type[BaseModel], bool], type[Model]] = {}


@dataclass(frozen=True, slots=True)
class LaxAs:
    """Field metadata: the annotation of the field in its model's lax twin."""

    annotation: Any


def _none_if_invalid(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    try:
        return handler(value)
    except ValidationError:
        return None


def _fitting(values: list[Any]) -> list[Any]:
    return [value for value in values if value is not None]


def lax(model: type[BaseModel], *, event: bool = False) -> type[Model]:
    """The lax twin of `model`; an `event` keeps its `type` as the discriminator."""
    twin = _twins.get((model, event))
    if twin is not None:
        return twin
    fields: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        if event and name == "type":
            fields[name] = (info.annotation, ...)
        else:
            laxed = _lax_field(info.annotation, info.metadata, info.discriminator)
            default = Field(None, validation_alias=info.validation_alias)  # the same keys
            fields[name] = (Annotated[laxed | None, WrapValidator(_none_if_invalid)], default)
    twin = create_model(f"Lax{model.__name__}", __base__=Model, **fields)
    _twins[(model, event)] = twin
    return twin


def _lax_field(annotation: Any, metadata: list[Any], discriminator: Any) -> Any:
    """A field's annotation in the twin: the one `LaxAs` names, else its own made lax."""
    widened = [meta.annotation for meta in metadata if isinstance(meta, LaxAs)]
    if widened:
        return widened[0]
    if isinstance(discriminator, str):  # a discriminated union of models, kept one
        models = [m for m in get_args(annotation) if isinstance(m, type) and m is not type(None)]
        members = tuple(lax(member, event=True) for member in models)
        return Annotated[Union[members], Field(discriminator=discriminator)]  # noqa: UP007
    return _laxed(annotation)


def _laxed(annotation: Any) -> Any:
    """An annotation with every model in it replaced by its lax twin."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return lax(annotation)
    args = get_args(annotation)
    if get_origin(annotation) is list:
        element: Any = Annotated[_laxed(args[0]) | None, WrapValidator(_none_if_invalid)]
        return Annotated[list[element], AfterValidator(_fitting)]
    if get_origin(annotation) is Union:
        return Union[tuple(_laxed(arg) for arg in args)]  # noqa: UP007
    return annotation


def lax_union(union: Any) -> tuple[TypeAdapter[Any], dict[type[Model], type[Model]]]:
    """The lax twin of a discriminated union of event models, and each twin's model."""
    twins = {lax(member, event=True): member for member in union_members(union)}
    twin_union: Any = Annotated[Union[tuple(twins)], Field(discriminator="type")]  # noqa: UP007
    return TypeAdapter(twin_union), twins
