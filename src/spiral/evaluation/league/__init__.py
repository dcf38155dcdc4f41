"""`spiral eval league`: rated play among any players (checkpoints, fixed agents, API agents) on one or more games.

- `players`: player specs and labels, run checkpoints as a series, agents loaded on demand, reseeding.
- `runner`: chunks of games per pair, round-robin or budgeted schedules, the resumable games.jsonl.
- `ratings`: openskill ratings (Plackett-Luce or Thurstone-Mosteller) with their uncertainty.
- `summary`: league.json, league.md and the report's HTML; `figure`: rating against training step.
- `cli`: the command line and `play_league`, which does all of it for a folder.
"""
