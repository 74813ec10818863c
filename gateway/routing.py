"""Route path convertors the gateway's routes share."""

from __future__ import annotations

from starlette.convertors import PathConvertor, register_url_convertor


class _AnythingConvertor(PathConvertor):
    """Like `path`, and newlines too: `/sha512/<digest>%0A` must be a 400, not an unknown route."""

    regex = "(?s:.*)"


# Imported by every module whose routes use `{name:anything}`, so none depends
# on another having been imported first.
register_url_convertor("anything", _AnythingConvertor())
