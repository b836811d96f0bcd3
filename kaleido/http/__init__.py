"""The HTTP API (CONTRACT.md section 4): a Starlette app served by hypercorn's trio worker."""
