"""The base of every event model.

Models name what real clients rely on; anything else is ignored, so a new upstream
field never fails validation. A model is never re-serialized (the frame's bytes are
forwarded), so `extra="ignore"` loses nothing and keeps `validate_json` cheaper than
`json.loads` of the same bytes.
"""

from typing import Any, get_args

from pydantic import BaseModel, ConfigDict


class Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


def event_types(*models: type[Model]) -> frozenset[str]:
    """The `type` values the models accept (their `Literal`s)."""
    return frozenset(
        value for model in models for value in get_args(model.model_fields["type"].annotation)
    )


def union_members(union: Any) -> tuple[type[Model], ...]:
    """The models of a union, or of an `Annotated` union (a discriminated one)."""
    members = get_args(union)
    if members and not isinstance(members[0], type):
        members = get_args(members[0])
    return members
