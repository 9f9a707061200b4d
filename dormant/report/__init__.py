"""Output shared by every command: the Rich console, JSON emission, progress bars, plot saving and run reports (HTML/Markdown)."""
