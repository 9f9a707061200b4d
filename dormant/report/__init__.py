"""Output shared by every command: the Rich console, JSON emission, progress bars and plot saving."""
