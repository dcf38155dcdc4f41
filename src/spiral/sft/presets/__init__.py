"""Named `spiral sft` presets (TOML); see spiral.sft.settings."""
