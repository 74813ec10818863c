"""Running ToolTool's production topology on one machine (``make run-s3``)."""
