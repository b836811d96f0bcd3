"""The HTTP API (docs/CONTRACT.md section 4): a Starlette app served by hypercorn's trio worker."""
