"""Error tables (one row per material and model) and their aggregations."""
