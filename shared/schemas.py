"""Schema pieces every service's HTTP API uses."""

from marshmallow import RAISE, Schema


class StrictSchema(Schema):
    """Input from the public edge: an unknown field is an error, not silently dropped."""

    class Meta:
        unknown = RAISE
