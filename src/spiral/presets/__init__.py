"""Named `spiral train` presets (TOML); see spiral.config."""
