"""The local console: chat with the bot in a terminal (or a pipe), as any person of the engagement."""
