"""Lax twins of the event models: the same fields, each one None when its value does not
fit, so that an event that fails its model still reaches the handlers that read it.

A twin is validated from the event as Python's `json` (or `reading.read_event`) loaded
it, so it takes what pydantic's JSON parser refuses (lone surrogates, invalid UTF-8
replaced). Only an event's `type`, the union's discriminator, must be a known one.
"""

from __future__ import annotations

from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, Field, TypeAdapter, ValidationError, WrapValidator, create_model
from pydantic_core.core_schema import ValidatorFunctionWrapHandler

from .base import Model, union_members

_twins: dict[tuple[type[BaseModel], bool], type[Model]] = {}


def _none_if_invalid(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    try:
        return handler(value)
    except ValidationError:
        return None


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
            laxed = _laxed(info.annotation)
            fields[name] = (Annotated[laxed | None, WrapValidator(_none_if_invalid)], None)
    twin = create_model(f"Lax{model.__name__}", __base__=Model, **fields)
    _twins[(model, event)] = twin
    return twin


def _laxed(annotation: Any) -> Any:
    """An annotation with every model in it replaced by its lax twin."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return lax(annotation)
    args = get_args(annotation)
    if get_origin(annotation) is list:
        return list[_laxed(args[0])]  # type: ignore[misc]
    if get_origin(annotation) is Union:
        return Union[tuple(_laxed(arg) for arg in args)]  # noqa: UP007
    return annotation


def lax_union(union: Any) -> tuple[TypeAdapter[Any], dict[type[Model], type[Model]]]:
    """The lax twin of a discriminated union of event models, and each twin's model."""
    twins = {lax(member, event=True): member for member in union_members(union)}
    twin_union: Any = Annotated[Union[tuple(twins)], Field(discriminator="type")]  # noqa: UP007
    return TypeAdapter(twin_union), twins
