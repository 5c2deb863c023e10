"""Slack: a thin translation layer between Slack and `cadences/`.

Outbound: `render` turns the neutral message model into Block Kit (escaped, within Slack's limits),
`port.SlackPort` is the engine's chat port (DMs, channel posts, threads, updates, the delivery key in
message metadata), and `pacing` keeps posts to about one a second per channel.
"""
