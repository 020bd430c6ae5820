"""Configuration of a decorated main: OmegaConf files, presets, dotlist and path overrides.

`argv` parses the command line of a decorated main, `compose` builds and merges the OmegaConf
config, `cli` is `clicfg` (the decorator) and its help. Importers name the module they need.
"""
