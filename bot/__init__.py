"""Chat platforms (console, Slack, Teams), the app factory and the command line."""
