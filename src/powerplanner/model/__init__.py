"""Pure domain values and the power-performance model. No I/O except the explicit loaders in
``loaders.py`` (which read files a caller names); nothing here reads a clock or global state."""
