"""Past one machine: frame-range shards of a stage spread over a Ray cluster (``--ray ADDRESS``).

Ray does the scheduling, retries and data moves; this package only says how a video is cut
into shards, joins the cluster, runs a stage's shard function on every shard with one
progress bar, and joins rendered segments. Ray is an optional extra: nothing here imports
it before a command is given ``--ray``, so the tool without the option is as it was.
"""
