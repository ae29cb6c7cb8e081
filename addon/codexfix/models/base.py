"""The base of every event model.

Models name what real clients rely on; anything else is ignored, so a new upstream
field never fails validation. A model is never re-serialized (the frame's bytes are
forwarded), so `extra="ignore"` loses nothing and keeps `validate_json` cheaper than
`json.loads` of the same bytes.
"""

from pydantic import BaseModel, ConfigDict


class Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
