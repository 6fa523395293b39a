"""Run configs: the schema, loading TOML, merging recipe + file + --set, validation, starter files."""
