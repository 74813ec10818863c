"""ToolTool indexer: the index format, the object stores and the job that maintains them."""
