"""The static, browsable site: what it shows (model), how (render)."""
