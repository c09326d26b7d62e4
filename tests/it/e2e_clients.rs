//! Real `pip` and `uv` against the real `granary` binary, with a fixture upstream.
