"""ToolTool gateway: a stateless Starlette app answering from the indexer's index objects."""
