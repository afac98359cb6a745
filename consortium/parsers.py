"""The API's JSON request parser: the client library's strict parser, for every JSON body.

DRF's own JSONParser decodes with the `charset` the client names, lets duplicate keys
overwrite each other, and lets nesting run into a RecursionError (a 500). A body the API
reads should mean the same thing to the server as to the partner that signed or sent it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import IO, Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from consortium_client.strictjson import StrictJsonError, strict_json_loads


class StrictJSONParser(JSONParser):
    # A JSONParser subclass, so that DRF reads the body through HttpRequest.body and its
    # DATA_UPLOAD_MAX_MEMORY_SIZE cap, as it does for its own parser.

    def parse(
        self,
        stream: IO[bytes],
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        try:
            return strict_json_loads(stream.read())
        except StrictJsonError as exc:
            raise ParseError(f"the body is not strict JSON: {exc}") from None
